"""The CoLLM paper's study on one split with one metric code: CF baselines, LLM variants,
ablations (UI-token, T1/T2/T3), score ensembles, efficiency ratios, warm/cold figure.

Resumable: each finished run is written to ``<out>/runs/<dataset>/<run>.json`` (metrics, timings,
checkpoint and per-row test scores) and is never recomputed; ``benchmarks/paper_table.py`` is the
command line.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from logging import getLogger

import numpy as np

from recbole_collm.errors import InputError

CF_MODELS = ("MF", "LightGCN", "SASRec", "DIN")
METRICS = [("auc", "AUC"), ("uauc", "UAUC"), ("undcg", "NDCG"), ("warm_auc", "warm AUC"), ("warm_uauc", "warm UAUC"),
           ("cold_auc", "cold AUC"), ("cold_uauc", "cold UAUC")]
# The paper's ML-1M figures (AUC, UAUC), as listed in ../shared/data/README.md (Vicuna-7B backbone).
PAPER_ML1M = {"MF": (0.6482, 0.6361), "LightGCN": (0.5959, 0.6499), "SASRec": (0.7078, 0.6884), "DIN": (0.7166, 0.6459),
              "TALLRec": (0.7097, 0.6818), "CoLLM-MF": (0.7295, 0.6875), "CoLLM-DIN": (0.7353, 0.6923)}


@dataclass
class Run:
    """One row of the table: a model with settings, possibly built on earlier runs' checkpoints."""

    name: str
    model: str
    group: str
    settings: dict = field(default_factory=dict)
    lora_from: str | None = None  # a run whose LoRA weights stage 2 starts from
    cf_from: str | None = None  # a run whose CF checkpoint feeds the CIE
    llm: bool = True


def plan() -> list[Run]:
    """The paper's rows, in an order where every run comes after the runs it needs."""
    runs = [Run(m, m, "Collaborative", llm=False) for m in CF_MODELS]
    runs += [
        Run("ICL", "ICL", "LLM"),
        Run("TALLRec", "TALLRec", "LLM"),
    ]
    runs += [Run(f"CoLLM-{m}", "CoLLM", "LLM", {"stage": "cie"}, lora_from="TALLRec", cf_from=m) for m in CF_MODELS]
    runs += [
        Run("w/ UI-token", "UIToken", "Ablation", {"stage": "cie"}, lora_from="TALLRec"),
        Run("T1 (tune CF model)", "CoLLM", "Ablation", {"stage": "cie", "tune_cf_model": True}, lora_from="TALLRec", cf_from="MF"),
        Run("T2 (CF from scratch)", "CoLLM", "Ablation", {"stage": "cie", "cie_checkpoint": None, "cie_model": "MF"}, lora_from="TALLRec"),
        Run("T3 (one step)", "CoLLM", "Ablation", {"stage": "one_step"}, cf_from="MF"),
    ]
    return runs


ENSEMBLES = (("MF + TALLRec", "MF", "TALLRec"), ("MF + CoLLM-MF", "MF", "CoLLM-MF"))


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def run_study(
    datasets: list[str],
    common: dict,
    llm: dict,
    out_dir: str,
    config_files: dict[str, list[str]] | None = None,
    only: list[str] | None = None,
    report_only: bool = False,
    per_run: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """Run (or reuse) every row on every dataset, then write ``table.md``, ``table.csv`` and
    ``warm_cold_<dataset>.png`` into ``out_dir``. ``report_only`` writes them from the finished
    runs alone, computing nothing. ``per_run`` adds settings to named runs (e.g. a stage's own
    row budget), above everything else. Returns ``{dataset: {row: record}}``."""
    from recbole_collm.quick_start import run_recbole_collm

    runs = [r for r in plan() if not only or r.name in only]
    results: dict[str, dict] = {}
    total, step, started = len(runs) * len(datasets), 0, time.time()
    for dataset in datasets:
        records = results.setdefault(dataset, {})
        for run in runs:
            step += 1
            path = os.path.join(out_dir, "runs", dataset, f"{slug(run.name)}.json")
            if os.path.isfile(path):
                with open(path) as f:
                    records[run.name] = json.load(f)
                print(f"[{step}/{total}] {dataset} {run.name}: done earlier ({path})", flush=True)
                continue
            if report_only:
                print(f"[{step}/{total}] {dataset} {run.name}: not run yet (left out of the report)", flush=True)
                continue
            settings = {**common, **(llm if run.llm else {}), **run.settings, **(per_run or {}).get(run.name, {})}
            settings["checkpoint_dir"] = os.path.join(out_dir, "saved", dataset, slug(run.name))
            if not run.llm:
                settings["train_rows_limit"] = None  # CF models train on all train rows
            if run.lora_from:
                settings["lora_checkpoint"] = _needs(records, run.lora_from, run.name)["model_file"]
            if run.cf_from:
                settings["cie_checkpoint"] = _needs(records, run.cf_from, run.name)["model_file"]
            print(f"[{step}/{total}] {dataset} {run.name}: running ({time.time() - started:.0f} s so far)", flush=True)
            result = run_recbole_collm(model=run.model, dataset=dataset, config_file_list=(config_files or {}).get(dataset),
                                       config_dict=settings)
            record = {
                "run": run.name,
                "model": run.model,
                "group": run.group,
                "test_result": {k: _plain(v) for k, v in result["test_result"].items()},
                "train_seconds": result["train_seconds"],
                "test_seconds": result["test_seconds"],
                "model_file": result["model_file"],
                "train_rows_limit": settings.get("train_rows_limit"),
                "test_rows": {k: np.asarray(v).tolist() for k, v in result["test_rows"].items()},
            }
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                json.dump(record, f)
            os.replace(tmp, path)  # a killed run never leaves a half-written record
            records[run.name] = record
            print(f"[{step}/{total}] {dataset} {run.name}: AUC {_fmt(record['test_result'].get('auc'))} "
                  f"in {record['train_seconds'] + record['test_seconds']:.0f} s", flush=True)
        context = None  # the dataset, built once for all of its ensembles
        for name, first, second in ENSEMBLES:
            if first in records and second in records:
                context = context or evaluation_context(dataset, common, config_files)
                records[name] = ensemble(records[first], records[second], context)
                records[name]["group"] = "Ensemble"
    write_outputs(results, out_dir)
    return results


def _needs(records: dict, name: str, by: str) -> dict:
    if name not in records:
        raise InputError(f"study: run '{by}' needs run '{name}', which is not in this study (see --only)")
    return records[name]


def _plain(value):
    return float(value) if isinstance(value, (np.floating, float, int, np.integer)) else value


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.4f}"


def evaluation_context(dataset: str, common: dict, config_files=None) -> tuple:
    """``(config, dataset, train split)`` for scoring per-row results with the plugin's evaluator
    (token → id maps and the train counts behind warm/cold)."""
    from recbole_collm.config import Config
    from recbole_collm.data import CollmDataset

    config = Config(model="MF", dataset=dataset, config_file_list=(config_files or {}).get(dataset),
                    config_dict={**common, "state": "WARNING"})
    data = CollmDataset(config)
    return config, data, data.build()[0]


def ensemble(first: dict, second: dict, context: tuple) -> dict:
    """Average of the two runs' probabilities (scores are already after sigmoid) on the same test
    rows, scored with the plugin's evaluator (AUC, UAUC, NDCG, warm/cold)."""
    import torch
    from recbole.evaluator.collector import DataStruct

    from recbole_collm.evaluator import CollmEvaluator

    a, b = first["test_rows"], second["test_rows"]
    # the same split, sampled and sorted the same way, reaches every model in the same order
    # (a user may rate an item twice, so rows are matched by position, not by key)
    if list(zip(a["user"], a["item"], a["label"])) != list(zip(b["user"], b["item"], b["label"])):
        raise InputError(f"ensemble: {first['run']} and {second['run']} were tested on different rows")
    score = (np.asarray(a["score"]) + np.asarray(b["score"])) / 2
    config, data, train = context
    struct = DataStruct()
    struct.set("rec.score", torch.from_numpy(score).float())
    struct.set("data.label", torch.tensor(a["label"]).float())
    struct.set("data.uid", torch.from_numpy(data.token2id(data.uid_field, list(a["user"]))))
    struct.set("data.iid", torch.from_numpy(data.token2id(data.iid_field, list(a["item"]))))
    evaluator = CollmEvaluator(config)
    evaluator.set_train_counts(train.train_user_count, train.train_item_count)
    result = evaluator.evaluate(struct)
    return {"run": f"{first['run']} + {second['run']}", "test_result": {k: _plain(v) for k, v in result.items()},
            "train_seconds": 0.0, "test_seconds": 0.0}


def efficiency(records: dict) -> dict | None:
    """TALLRec vs CoLLM-MF time (paper Table 6). CoLLM trains TALLRec's stage, then its own."""
    if "TALLRec" not in records or "CoLLM-MF" not in records:
        return None
    tallrec, collm = records["TALLRec"], records["CoLLM-MF"]
    collm_train = tallrec["train_seconds"] + collm["train_seconds"]
    return {
        "TALLRec train s": tallrec["train_seconds"],
        "CoLLM-MF train s (stage 1 + stage 2)": collm_train,
        "train ratio": collm_train / tallrec["train_seconds"],
        "TALLRec test s": tallrec["test_seconds"],
        "CoLLM-MF test s": collm["test_seconds"],
        "inference ratio": collm["test_seconds"] / tallrec["test_seconds"],
    }


def quality_checks(records: dict) -> list[str]:
    """The issue's targets, each as one line saying met or missed and by how much."""
    lines = []
    get = lambda run, key: records.get(run, {}).get("test_result", {}).get(key)  # noqa: E731
    for other in ("TALLRec", "MF"):
        for key, label in (("auc", "AUC"), ("uauc", "UAUC"), ("warm_auc", "warm AUC"), ("warm_uauc", "warm UAUC")):
            mine, theirs = get("CoLLM-MF", key), get(other, key)
            if mine is None or theirs is None:
                continue
            verdict = "met" if mine > theirs else "missed"
            lines.append(f"CoLLM-MF > {other} on {label}: {verdict} ({_fmt(mine)} vs {_fmt(theirs)}, {mine - theirs:+.4f})")
    mine, theirs = get("CoLLM-MF", "cold_auc"), get("TALLRec", "cold_auc")
    if mine is not None and theirs is not None:
        verdict = "met" if abs(mine - theirs) <= 0.01 or mine > theirs else "missed"
        lines.append(f"CoLLM-MF within 0.01 of TALLRec on cold AUC: {verdict} ({_fmt(mine)} vs {_fmt(theirs)}, {mine - theirs:+.4f})")
    return lines


def write_outputs(results: dict, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    md, rows = [], []
    for dataset, records in results.items():
        paper = dataset == "ml-1m-collm"
        header = ["group", "run"] + [label for _, label in METRICS] + (["paper AUC", "paper UAUC"] if paper else []) + ["train s", "test s"]
        md += [f"## {dataset}", ""]
        sample = next(iter(records.values()))
        llm_rows = next((r.get("train_rows_limit") for r in records.values() if r.get("group") == "LLM"), None)
        warm, cold = (sample["test_result"].get(f"{k}_rows") for k in ("warm", "cold"))
        md += [f"Test rows: {len(sample.get('test_rows', {}).get('label', []))} (warm {int(warm or 0)}, "
               f"cold {int(cold or 0)}), the same for every run; LLM train rows per stage: "
               f"{llm_rows or 'all'} (most recent); CF models: all train rows.", ""]
        md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, record in records.items():
            result = record["test_result"]
            values = [_fmt(result.get(key)) for key, _ in METRICS]
            extra = [_fmt(PAPER_ML1M[name][0]), _fmt(PAPER_ML1M[name][1])] if paper and name in PAPER_ML1M else (["", ""] if paper else [])
            cells = [record.get("group", ""), name] + values + extra + [f"{record['train_seconds']:.0f}", f"{record['test_seconds']:.0f}"]
            md.append("| " + " | ".join(cells) + " |")
            rows.append({"dataset": dataset, "group": record.get("group", ""), "run": name,
                         **{label: result.get(key) for key, label in METRICS},
                         "warm_rows": result.get("warm_rows"), "cold_rows": result.get("cold_rows"),
                         "train_seconds": record["train_seconds"], "test_seconds": record["test_seconds"]})
        eff = efficiency(records)
        if eff:
            md += ["", "Efficiency (paper Table 6: CoLLM ≈ 1.125x TALLRec at inference): " + ", ".join(
                f"{k} {v:.2f}" if "ratio" in k else f"{k} {v:.0f}" for k, v in eff.items())]
        checks = quality_checks(records)
        if checks:
            md += ["", "Quality targets:"] + [f"- {line}" for line in checks]
        md.append("")
        _warm_cold_figure(dataset, records, os.path.join(out_dir, f"warm_cold_{dataset}.png"))
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    if rows:
        with open(os.path.join(out_dir, "table.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    getLogger().info(f"study: wrote {out_dir}/table.md, table.csv and the warm/cold figures")


def _warm_cold_figure(dataset: str, records: dict, path: str) -> None:
    """Paper Fig. 3: warm vs cold AUC and UAUC of MF, TALLRec, CoLLM-MF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("MF", "TALLRec", "CoLLM-MF") if n in records]
    if not names:
        return
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, metric in zip(axes, ("auc", "uauc")):
        width, lowest = 0.8 / len(names), 0.4
        for k, name in enumerate(names):
            result = records[name]["test_result"]
            values = [result.get(f"{subset}_{metric}", float("nan")) for subset in ("warm", "cold")]
            bars = ax.bar(np.arange(2) + k * width, values, width, label=name)
            ax.bar_label(bars, fmt="%.3f", fontsize=6)
            lowest = min([lowest] + [v for v in values if not math.isnan(v)])
        ax.set_xticks(np.arange(2) + width * (len(names) - 1) / 2, ["warm", "cold"])
        ax.set_ylim(math.floor(lowest * 10) / 10 - 0.05, 1.0)
        ax.axhline(0.5, color="grey", linewidth=0.5)
        ax.set_title(f"{dataset}: {metric.upper()}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
