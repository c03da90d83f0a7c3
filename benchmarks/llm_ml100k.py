"""MF vs TALLRec vs CoLLM-MF on ml-100k on the CPU, on the same sampled test rows.

    python benchmarks/llm_ml100k.py [--train-rows 600] [--eval-rows 300] [--out results/llm_ml100k.md]

Steps: MF (all train rows) → TALLRec (LoRA on the most recent --train-rows train rows, text-only
prompts) → CoLLM-MF stage 2 (CIE on the same rows, starting from TALLRec's LoRA, MF checkpoint
as the collaborative source). CoLLM's stage 1 *is* TALLRec, so it is not trained twice.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recbole_collm import run_recbole_collm  # noqa: E402

COLUMNS = [("auc", "AUC"), ("uauc", "UAUC"), ("warm_auc", "warm AUC"), ("warm_uauc", "warm UAUC"),
           ("cold_auc", "cold AUC"), ("cold_uauc", "cold UAUC")]


def fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-rows", type=int, default=600)
    parser.add_argument("--eval-rows", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "results" / "llm_ml100k.md"))
    args = parser.parse_args(sys.argv[1:])
    sys.argv = sys.argv[:1]

    common = {"eval_rows_limit": args.eval_rows, "checkpoint_dir": str(ROOT / "saved"), "show_progress": False}
    llm = {**common, "train_rows_limit": args.train_rows, "epochs": args.epochs}
    runs = []

    def run(label, model, config):
        start = time.time()
        result = run_recbole_collm(model=model, dataset="ml-100k", config_dict=config)
        seconds = time.time() - start
        runs.append((label, result["test_result"], seconds))
        print(f"{label}: " + ", ".join(f"{n} {fmt(result['test_result'].get(k))}" for k, n in COLUMNS)
              + f" ({seconds:.0f} s)", flush=True)
        return result

    mf = run("MF", "MF", {**common, "train_rows_limit": None})
    tallrec = run("TALLRec", "TALLRec", llm)
    run("CoLLM-MF", "CoLLM", {**llm, "stage": "cie", "lora_checkpoint": tallrec["model_file"],
                              "cie_checkpoint": mf["model_file"]})

    test = runs[0][1]
    lines = [
        f"ml-100k, test rows: {args.eval_rows} sampled (seeded; warm {test.get('warm_rows')}, cold {test.get('cold_rows')}); "
        f"LLM train rows: the {args.train_rows} most recent, {args.epochs} epoch(s) per stage; SmolLM2-135M-Instruct, fp32, 2 CPU cores.",
        "",
        "| model | " + " | ".join(n for _, n in COLUMNS) + " | seconds |",
        "|---|" + "---|" * (len(COLUMNS) + 1),
    ]
    lines += [f"| {label} | " + " | ".join(fmt(t.get(k)) for k, _ in COLUMNS) + f" | {s:.0f} |" for label, t, s in runs]
    table = "\n".join(lines)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
