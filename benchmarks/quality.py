"""Quality benchmark: MF, TALLRec, CoLLM-MF, SASRec, CoLLM-SASRec, DeepFM and DCNV2 on the same seeded test rows,
AUC / UAUC overall, warm and cold, with wall time per stage.

    python -m benchmarks.quality [--config benchmarks/quality.yaml] [--datasets ml-1m-collm] [--only MF TALLRec CoLLM-MF]
                                 [--report-only]

Budget and settings live in the yaml. Runs through the study runner (resumable: finished runs are
kept under benchmarks/results/quality/runs/ and never recomputed). Writes
benchmarks/results/quality/<dataset>.json: {"test_rows": N, "models": {"MF": {"auc", "uauc",
"warm_auc", "cold_auc", "train_seconds", "test_seconds"}, ...}} and table.md.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import yaml

from benchmarks.common import ROOT, available, parse_args
from benchmarks.study import run_study

KEYS = ("auc", "uauc", "warm_auc", "warm_uauc", "cold_auc", "cold_uauc")


def summary(records: dict) -> dict:
    """The per-dataset JSON: test-row count and each model's figures (CoLLM's train time is its
    own stage plus the TALLRec stage it starts from)."""
    models, rows = {}, 0
    for name, record in records.items():
        test = record["test_result"]
        rows = len(record.get("test_rows", {}).get("label", [])) or rows
        seconds = record["train_seconds"]
        if name.startswith("CoLLM-") and "TALLRec" in records:
            seconds += records["TALLRec"]["train_seconds"]
        models[name] = {**{k: _number(test.get(k)) for k in KEYS}, "train_seconds": seconds,
                        "test_seconds": record["test_seconds"]}
    return {"test_rows": rows, "models": models}


def _number(value):
    """A metric for the JSON file: undefined ones (a subset with one class) as null, not NaN."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "benchmarks" / "quality.yaml"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality"))
    parser.add_argument("--datasets", nargs="+")
    parser.add_argument("--only", nargs="+", metavar="RUN")
    parser.add_argument("--report-only", action="store_true", help="write the tables from finished runs, compute nothing")
    args = parse_args(parser)
    settings = yaml.safe_load(Path(args.config).read_text())
    datasets = available(args.datasets or settings["datasets"])
    results = run_study(datasets, settings.get("common") or {}, settings.get("llm") or {}, args.out,
                        only=args.only or settings["runs"], per_run=settings.get("per_run"), report_only=args.report_only)
    for dataset, records in results.items():
        out = summary({k: v for k, v in records.items() if k in (args.only or settings["runs"])})
        path = Path(args.out) / f"{dataset}.json"
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"\n{dataset}: {out['test_rows']} test rows -> {path}")
        print("| model | " + " | ".join(KEYS) + " | train s |\n|---|" + "---|" * (len(KEYS) + 1))
        for name, figures in out["models"].items():
            cells = " | ".join("n/a" if figures[k] is None else f"{figures[k]:.4f}" for k in KEYS)
            print(f"| {name} | {cells} | {figures['train_seconds']:.0f} |")


if __name__ == "__main__":
    main()
