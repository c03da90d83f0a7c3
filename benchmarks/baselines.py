"""Train MF, LightGCNCTR, SASRecCTR and DINCTR (the paper's MF, LightGCN, SASRec, DIN) through the plugin on ml-100k and (when present) the CoLLM
paper's ML-1M split; print and write a markdown table of test metrics.

    python -m benchmarks.baselines [--datasets ml-100k,ml-1m-collm] [--models MF,DINCTR,DeepFM] [--out results/baselines.md]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import ROOT, available, fmt, parse_args
from recbole_collm import run_recbole_collm

PAPER_AUC = {"MF": 0.6482, "LightGCNCTR": 0.5959, "SASRecCTR": 0.7078, "DINCTR": 0.7166}
COLUMNS = [("auc", "AUC"), ("uauc", "UAUC"), ("undcg", "NDCG"), ("warm_auc", "warm AUC"), ("cold_auc", "cold AUC")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="ml-100k,ml-1m-collm")
    parser.add_argument("--models", default="MF,LightGCNCTR,SASRecCTR,DINCTR")
    parser.add_argument("--out", default=str(ROOT / "results" / "baselines.md"))
    parser.add_argument("--epochs", type=int, default=None, help="override the yaml's epoch cap")
    args = parse_args(parser)

    rows = []
    for dataset in available(args.datasets.split(",")):
        for model in args.models.split(","):
            overrides = {"show_progress": False, "checkpoint_dir": str(ROOT / "saved")}
            if args.epochs:
                overrides["epochs"] = args.epochs
            start = time.time()
            result = run_recbole_collm(model=model, dataset=dataset, config_dict=overrides)
            test = result["test_result"]
            rows.append((dataset, model, test, time.time() - start, result["model_file"]))
            print(f"{dataset} {model}: " + ", ".join(f"{n} {fmt(test.get(k))}" for k, n in COLUMNS), flush=True)

    lines = [
        "| dataset | model | " + " | ".join(n for _, n in COLUMNS) + " | paper AUC | seconds |",
        "|---|---|" + "---|" * (len(COLUMNS) + 2),
    ]
    for dataset, model, test, seconds, _ in rows:
        paper = fmt(PAPER_AUC.get(model)) if dataset == "ml-1m-collm" else ""
        lines.append(
            f"| {dataset} | {model} | " + " | ".join(fmt(test.get(k)) for k, _ in COLUMNS) + f" | {paper} | {seconds:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table + "\n\nCheckpoints:\n" + "\n".join(f"- {r[4]}" for r in rows) + "\n")


if __name__ == "__main__":
    main()
