"""The CoLLM paper's study on one split with one metric code: CF baselines, LLM variants,
ablations (UI-token, T1/T2/T3), score ensembles; the tables and figure are :mod:`report`'s.

Resumable: each finished run is written to ``<out>/runs/<dataset>/<run>.json`` (metrics, timings,
checkpoint and per-row test scores) and is never recomputed. ``paper_table.py`` and ``quality.py``
are the command lines. A benchmark, not library code: it holds the paper's numbers and the
study's plan.
"""
from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.common import fmt
from benchmarks.report import write_outputs
from recbole_collm.errors import InputError
from recbole_collm.files import atomic_write

# the paper's collaborative rows: row name -> the plugin model trained as the paper does (BCE on labels)
CF_MODELS = {"MF": "MF", "LightGCN": "LightGCNCTR", "SASRec": "SASRecCTR", "DIN": "DINCTR"}
# RecBole's own CTR models on the same labeled rows: the field's context-aware baselines
CTR_MODELS = ("DeepFM", "DCNV2")


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
    llm_rows: bool = False  # not an LLM, but trained on the LLM's train rows (its reference)


def plan() -> list[Run]:
    """The paper's rows, in an order where every run comes after the runs it needs."""
    # what learning means on these rows: popularity (every train row) and each item's positive rate
    # in the LLM's own train rows (the LLM settings' sample: memorising titles scores this much)
    runs = [Run("Pop", "Pop", "Reference", llm=False), Run("ItemRate", "ItemRate", "Reference", llm=False, llm_rows=True)]
    runs += [Run(name, model, "Collaborative", llm=False) for name, model in CF_MODELS.items()]
    runs += [Run(m, m, "CTR", llm=False) for m in CTR_MODELS]
    runs += [Run("CTRL (DIN)", "CTRL", "CTR", llm=False)]  # DIN aligned with a sentence encoder, served alone
    runs += [
        Run("ICL", "ICL", "LLM"),
        Run("TALLRec", "TALLRec", "LLM"),
        Run("Prompt4NR", "Prompt4NR", "LLM"),
    ]
    runs += [Run(f"CoLLM-{m}", "CoLLM", "LLM", {"stage": "cie"}, lora_from="TALLRec", cf_from=m) for m in CF_MODELS]
    runs += [
        Run("w/ UI-token", "UIToken", "Ablation", {"stage": "cie"}, lora_from="TALLRec"),
        Run("T1 (tune CF model)", "CoLLM", "Ablation", {"stage": "cie", "tune_cf_model": True}, lora_from="TALLRec", cf_from="MF"),
        Run("T2 (CF from scratch)", "CoLLM", "Ablation", {"stage": "cie", "cf_checkpoint": None, "cf_model": "MF"}, lora_from="TALLRec"),
        Run("T3 (one step)", "CoLLM", "Ablation", {"stage": "one_step"}, cf_from="MF"),
    ]
    return runs


ENSEMBLES = (("MF + TALLRec", "MF", "TALLRec"), ("MF + CoLLM-MF", "MF", "CoLLM-MF"))


ROW_KEYS = ("train_rows_limit", "train_rows_sample")


def _llm_settings(run: Run, llm: dict) -> dict:
    """An LLM row takes every LLM setting; a reference for the LLM (ItemRate) only the LLM's
    train-row sample; a collaborative or CTR model trains on all train rows."""
    if run.llm:
        return llm
    if run.llm_rows:
        return {k: llm[k] for k in ROW_KEYS if k in llm}
    return {"train_rows_limit": None}


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
    resamples: int = 1000,
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
            settings = {**common, **_llm_settings(run, llm), **run.settings, **(per_run or {}).get(run.name, {})}
            settings["checkpoint_dir"] = os.path.join(out_dir, "saved", dataset, slug(run.name))
            settings.setdefault("eval_rows_sample", "rows")  # every row on the same test rows, whatever a model's yaml
            if run.lora_from:
                settings["lora_checkpoint"] = _needs(records, run.lora_from, run.name)["model_file"]
            if run.cf_from:
                settings["cf_checkpoint"] = _needs(records, run.cf_from, run.name)["model_file"]
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
                "train_rows_sample": settings.get("train_rows_sample") or "recent",
                "test_rows": {k: np.asarray(v).tolist() for k, v in result["test_rows"].items()},
            }
            os.makedirs(os.path.dirname(path), exist_ok=True)
            text = json.dumps(record)
            atomic_write(path, lambda tmp: open(tmp, "w").write(text))  # a killed run leaves no half record
            records[run.name] = record
            del result
            gc.collect()  # the run's model (an LLM and its prefix store) goes before the next one loads
            print(f"[{step}/{total}] {dataset} {run.name}: AUC {fmt(record['test_result'].get('auc'))} "
                  f"in {record['train_seconds'] + record['test_seconds']:.0f} s", flush=True)
        context = None  # the dataset, built once for all of its ensembles
        for name, first, second in ENSEMBLES:
            if first in records and second in records:
                context = context or evaluation_context(dataset, common, config_files)
                records[name] = ensemble(records[first], records[second], context)
                records[name]["group"] = "Ensemble"
    write_outputs(results, out_dir, resamples)  # the bootstrap's user resamples per comparison
    return results


def _needs(records: dict, name: str, by: str) -> dict:
    if name not in records:
        raise InputError(f"study: run '{by}' needs run '{name}', which is not in this study (see --only)")
    return records[name]


def _plain(value):
    return float(value) if isinstance(value, (np.floating, float, int, np.integer)) else value


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
    struct.set("data.train_user_count", torch.from_numpy(train.train_user_count))
    struct.set("data.train_item_count", torch.from_numpy(train.train_item_count))
    result = CollmEvaluator(config).evaluate(struct)
    return {"run": f"{first['run']} + {second['run']}", "test_result": {k: _plain(v) for k, v in result.items()},
            "train_seconds": 0.0, "test_seconds": 0.0, "test_rows": {**a, "score": score.tolist()}}
