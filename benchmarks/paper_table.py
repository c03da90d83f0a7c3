"""The CoLLM paper's table in one command: CF baselines, RecBole's DeepFM and DCNV2, CTRL (DIN), ICL, TALLRec, Prompt4NR, CoLLM-{MF,LightGCN,SASRec,DIN},
UI-token and T1/T2/T3 ablations, MF+LLM ensembles, efficiency ratio, warm/cold figures.

    python -m benchmarks.paper_table [--config benchmarks/paper_table.yaml] [--out benchmarks/results/paper_table]
                                     [--datasets ml-100k] [--only MF TALLRec CoLLM-MF] [--report-only]

Budget (training rows, epochs, test rows) lives in the yaml. Finished runs are kept under
<out>/runs/ and never recomputed: after an interruption, run the same command again.
Writes <out>/table.md, <out>/table.csv and <out>/warm_cold_<dataset>.png.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from benchmarks.common import ROOT, available, parse_args
from benchmarks.study import plan, run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "benchmarks" / "paper_table.yaml"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "paper_table"))
    parser.add_argument("--datasets", nargs="+", help="override the yaml's datasets")
    parser.add_argument("--only", nargs="+", metavar="RUN", help=f"a subset of runs: {', '.join(r.name for r in plan())}")
    parser.add_argument("--report-only", action="store_true", help="write the table from finished runs, compute nothing")
    args = parse_args(parser)
    with open(args.config) as f:
        study = yaml.safe_load(f)
    datasets = available(args.datasets or study["datasets"])
    run_study(datasets, study.get("common") or {}, study.get("llm") or {}, args.out, only=args.only,
              report_only=args.report_only, per_run=study.get("per_run"))
    print(f"\nwrote {args.out}/table.md, table.csv and warm_cold_*.png\n")
    print((Path(args.out) / "table.md").read_text())


if __name__ == "__main__":
    main()
