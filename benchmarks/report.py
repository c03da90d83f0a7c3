"""The study's outputs: ``table.md`` / ``table.csv`` with the paper's figures beside ours, the
efficiency ratio (paper Table 6), the paper's claims with their intervals (met, missed or not
significant), the warm/cold figure (paper Fig. 3)."""
from __future__ import annotations

import csv
import math
import os
from logging import getLogger

import numpy as np

from benchmarks.common import fmt
from recbole_collm.evaluator.compare import paired_bootstrap

METRICS = [("auc", "AUC"), ("uauc", "UAUC"), ("undcg", "NDCG"), ("warm_auc", "warm AUC"), ("warm_uauc", "warm UAUC"),
           ("cold_auc", "cold AUC"), ("cold_uauc", "cold UAUC")]
# The paper's ML-1M figures (AUC, UAUC), as listed in ../shared/data/README.md (Vicuna-7B backbone).
PAPER_ML1M = {"MF": (0.6482, 0.6361), "LightGCN": (0.5959, 0.6499), "SASRec": (0.7078, 0.6884), "DIN": (0.7166, 0.6459),
              "TALLRec": (0.7097, 0.6818), "CoLLM-MF": (0.7295, 0.6875), "CoLLM-DIN": (0.7353, 0.6923)}


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


# the paper's claims on these rows (each model above its reference), then each LLM model against the
# memorised-titles reference (ItemRate: what a text model that learns anything passes)
CLAIMS = (("CoLLM-MF", "TALLRec"), ("CoLLM-MF", "MF"), ("CoLLM-SASRec", "SASRec"), ("CoLLM-SASRec", "TALLRec"),
          ("CoLLM-MF", "Prompt4NR"), ("CoLLM-MF", "CTRL (DIN)"), ("TALLRec", "ItemRate"), ("CoLLM-MF", "ItemRate"), ("CoLLM-SASRec", "ItemRate"))


# every row of the table is compared with this run on the same test rows
ANCHOR = "CoLLM-MF"


def _compare(records: dict, model: str, reference: str, metric: str, resamples: int):
    """The paired bootstrap of ``model`` − ``reference`` on their shared test rows, or None when
    either run is absent; two runs scored on different rows are an error, never a comparison."""
    mine, theirs = (records.get(run, {}).get("test_rows") for run in (model, reference))
    if not mine or not theirs:
        return None
    if list(zip(mine["user"], mine["item"])) != list(zip(theirs["user"], theirs["item"])):
        raise ValueError(f"report: {model} and {reference} were tested on different rows")
    return paired_bootstrap(np.asarray(mine["user"]), np.asarray(mine["label"]), np.asarray(mine["score"]),
                            np.asarray(theirs["score"]), metric, resamples=resamples)


def quality_checks(records: dict, resamples: int = 1000) -> list[str]:
    """The paper's claims (CoLLM above TALLRec and above its collaborative source), each on AUC and
    UAUC as one line: met, missed or not significant by a 95% paired bootstrap over users of the
    two runs' scores of the same test rows, with the interval."""
    lines = []
    for model, reference in CLAIMS:
        for metric in ("auc", "uauc"):
            c = _compare(records, model, reference, metric, resamples)
            if c is None:
                break
            lines.append(f"{model} > {reference} on {metric.upper()}: {c.verdict} ({fmt(c.a)} vs {fmt(c.b)}, "
                         f"{c.difference:+.4f}, 95% interval [{c.low:+.4f}, {c.high:+.4f}], {c.users} users)")
    return lines


def versus_anchor(records: dict, name: str, metric: str, resamples: int = 1000) -> str:
    """The table cell "row − CoLLM-MF [95% interval]" (paired bootstrap over users), with "n.s."
    where the interval holds zero; empty for the anchor itself or when either run is absent."""
    if name == ANCHOR:
        return ""
    c = _compare(records, name, ANCHOR, metric, resamples)
    if c is None:
        return ""
    if not c.defined:
        return "undefined"
    return f"{c.difference:+.4f} [{c.low:+.4f}, {c.high:+.4f}]" + ("" if c.significant else " n.s.")


def llm_train_rows(records: dict) -> str:
    """The train rows of each LLM run that trains (a CoLLM run trains its CIE stage on them; its
    LoRA stage is the TALLRec run it starts from; ICL trains nothing), the most common count said
    once: ``LLM train rows: TALLRec 200, every other LLM run 800 (seeded random sample)``."""
    llm = {name: r for name, r in records.items() if r.get("group") in ("LLM", "Ablation") and r.get("model") != "ICL"}
    if not llm:
        return "no LLM runs"
    counts = {name: r.get("train_rows_limit") or "all" for name, r in llm.items()}
    values = list(counts.values())
    common = max(dict.fromkeys(values), key=values.count)
    parts = [f"{name} {n}" for name, n in counts.items() if n != common]
    parts.append(f"{'every other LLM run' if parts else 'every LLM run'} {common}")
    samples = sorted({r.get("train_rows_sample") or "recent" for r in llm.values()})
    how = "; ".join("most recent" if s == "recent" else "seeded random sample" for s in samples)
    return f"LLM train rows: {', '.join(parts)} ({how})"


def write_outputs(results: dict, out_dir: str, resamples: int = 1000) -> None:
    os.makedirs(out_dir, exist_ok=True)
    md, rows = [], []
    for dataset, records in results.items():
        paper = dataset == "ml-1m-collm"
        versus = [f"{label} − {ANCHOR}" for label in ("AUC", "UAUC")] if ANCHOR in records else []
        header = (["group", "run"] + [label for _, label in METRICS] + versus + (["paper AUC", "paper UAUC"] if paper else [])
                  + ["train s", "test s"])
        md += [f"## {dataset}", ""]
        sample = next(iter(records.values()))
        warm, cold = (sample["test_result"].get(f"{k}_rows") for k in ("warm", "cold"))
        md += [f"Test rows: {len(sample.get('test_rows', {}).get('label', []))} (warm {int(warm or 0)}, "
               f"cold {int(cold or 0)}), the same for every run; {llm_train_rows(records)}; CF models: all train rows.", ""]
        if paper:
            blank = [name for name in records if records[name].get("group") not in ("Reference", "Ensemble", "Ablation")
                     and name not in PAPER_ML1M]
            md += ["Paper AUC / UAUC: the paper's figures on this split with Vicuna-7B, as ../shared/data/README.md "
                   f"lists them; blank where it lists none ({', '.join(blank)}).", ""]
        if versus:
            md += [f"“AUC − {ANCHOR}”, “UAUC − {ANCHOR}”: the row minus {ANCHOR} on the same rows, with the 95% paired "
                   "bootstrap interval over users; n.s. where it holds zero.", ""]
        md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, record in records.items():
            result = record["test_result"]
            values = [fmt(result.get(key)) for key, _ in METRICS]
            extra = [fmt(PAPER_ML1M[name][0]), fmt(PAPER_ML1M[name][1])] if paper and name in PAPER_ML1M else (["", ""] if paper else [])
            against = [versus_anchor(records, name, metric, resamples) for metric in ("auc", "uauc")] if versus else []
            cells = ([record.get("group", ""), name] + values + against + extra
                     + [f"{record['train_seconds']:.0f}", f"{record['test_seconds']:.0f}"])
            md.append("| " + " | ".join(cells) + " |")
            rows.append({"dataset": dataset, "group": record.get("group", ""), "run": name,
                         **{label: result.get(key) for key, label in METRICS},
                         "warm_rows": result.get("warm_rows"), "cold_rows": result.get("cold_rows"),
                         "train_seconds": record["train_seconds"], "test_seconds": record["test_seconds"]})
        eff = efficiency(records)
        if eff:
            md += ["", "Efficiency (paper Table 6: CoLLM ≈ 1.125x TALLRec at inference): " + ", ".join(
                f"{k} {v:.2f}" if "ratio" in k else f"{k} {v:.0f}" for k, v in eff.items())]
        checks = quality_checks(records, resamples)
        if checks:
            md += ["", "The paper's claims on these rows, then each LLM model against ItemRate (95% paired bootstrap "
                   "over users):"] + [f"- {line}" for line in checks]
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
