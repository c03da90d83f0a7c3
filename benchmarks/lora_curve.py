"""The text half's learning curve: TALLRec (CoLLM's LoRA stage alone) trained for many epochs on a
fixed seeded sample of train rows, validated every epoch, stopped early on validation AUC; beside it
the references that say what learning means on the same rows: ItemRate (each item's smoothed
positive rate in the same train rows) and RecBole's Pop (every train row).

    python -m benchmarks.lora_curve [--dataset ml-1m-collm] [--train-rows 2000] [--valid-rows 1000]
        [--epochs 20] [--variants K4 K8] [--collm K4] [--report-only]

Each variant (``VARIANTS``: LoRA on the top K layers, its rank and learning rate) and each
reference runs through ``run_recbole_collm`` in a process of its own and is kept under
``benchmarks/results/lora_curve/runs/<dataset>/`` (not recomputed). Writes ``<dataset>.md``
(per epoch: train rows' AUC, mean loss beside the label entropy, validation AUC; then the best
epoch's test AUC/UAUC, each variant against ItemRate with the paired bootstrap interval over users)
and ``<dataset>.png`` (validation AUC per epoch, ItemRate's as a line). The defaults are chosen
from the validation columns only.

``--collm VARIANT``: CoLLM-MF's CIE stage from that variant's best LoRA weights (the MF that
``cf_checkpoint: auto`` trains on every train row; the first ``--collm-rows`` of the same seeded
train sample, so its rows are TALLRec's; CoLLM's CIE budget), on the same valid and test rows,
against TALLRec, its MF source and ItemRate, each with the paired interval.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, available, fmt, parse_args
from recbole_collm.evaluator.compare import paired_bootstrap
from recbole_collm.files import atomic_write

OUT = ROOT / "benchmarks" / "results" / "lora_curve"
VARIANTS = {
    "K4": {"lora_layers": 4},
    "K8": {"lora_layers": 8},
    "K4-r16": {"lora_layers": 4, "lora_r": 16, "lora_alpha": 32},
    "K4-lr3e-4": {"lora_layers": 4, "learning_rate": 3e-4},
    # every linear module of the top 4 layers (attention and MLP), a larger step
    "K4-all-lr3e-3": {"lora_layers": 4, "learning_rate": 3e-3,
                      "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
}
REFERENCES = {"ItemRate": "ItemRate", "Pop": "Pop"}
COLLM = "CoLLM-MF"


def settings(name: str, args: argparse.Namespace) -> tuple[str, dict]:
    """``(model, config_dict)`` of a variant or reference: the same seeded train and eval rows."""
    rows = {"train_rows_limit": args.train_rows, "train_rows_sample": "random", "eval_rows_limit": args.valid_rows,
            "eval_rows_sample": "rows",
            "show_progress": False, "checkpoint_dir": str(OUT / "saved" / args.dataset / name)}
    if name == "Pop":  # RecBole's Pop counts every train row (a CF model's budget)
        return "Pop", {**rows, "train_rows_limit": None}
    if name in REFERENCES:
        return REFERENCES[name], rows
    if name == COLLM:
        lora = record(args.collm, args)
        return "CoLLM", {**rows, "train_rows_limit": args.collm_rows, "stage": "cie", "cie_epochs": 3,
                         "cie_learning_rate": 1e-3, "eval_step": 1, "lora_checkpoint": lora["model_file"],
                         **VARIANTS[args.collm]}
    return "TALLRec", {**rows, "epochs": args.epochs, "stopping_step": args.stopping_step, "eval_step": 1,
                       "lora_train_rows": None, **VARIANTS[name]}


def run_step(name: str, args: argparse.Namespace) -> None:
    from recbole_collm.quick_start import run_recbole_collm

    model, config = settings(name, args)
    start = time.perf_counter()
    result = run_recbole_collm(model=model, dataset=args.dataset, config_dict=config)
    record = {
        "name": name, "model": model, "settings": config, "date": datetime.date.today().isoformat(),
        "seconds": time.perf_counter() - start,
        "best_valid_result": {k: float(v) for k, v in (result["best_valid_result"] or {}).items()},
        "test_result": {k: float(v) for k, v in result["test_result"].items()},
        "history": result.get("history") or [],
        "model_file": result["model_file"],
        "test_rows": {k: np.asarray(v).tolist() for k, v in result["test_rows"].items()},
    }
    source = result.get("source_test_result")
    if source is not None:  # CoLLM's MF on the same test rows
        record["source_test_result"] = {k: float(v) for k, v in source.items()}
        record["source_test_rows"] = {**record["test_rows"], "score": np.asarray(source.rows["score"]).tolist()}
    path = OUT / "runs" / args.dataset / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, default=float)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def record(name: str, args: argparse.Namespace) -> dict | None:
    """The finished run's record, running it first (in its own process) unless ``--report-only``."""
    path = OUT / "runs" / args.dataset / f"{name}.json"
    if not path.is_file() and not args.report_only:
        print(f"{args.dataset} {name}: running", flush=True)
        command = [sys.executable, "-m", "benchmarks.lora_curve", "--dataset", args.dataset, "--train-rows",
                   str(args.train_rows), "--valid-rows", str(args.valid_rows), "--epochs", str(args.epochs),
                   "--stopping-step", str(args.stopping_step), "--collm-rows", str(args.collm_rows), "--step", name]
        if args.collm:
            command += ["--collm", args.collm]
        subprocess.run(command, cwd=ROOT, check=True)
    return json.loads(path.read_text()) if path.is_file() else None


def against(rows: dict, reference: dict, metric: str) -> str:
    """``rows`` − ``reference`` on the same test rows, the paired interval over users."""
    if [rows["user"], rows["item"]] != [reference["user"], reference["item"]]:
        raise ValueError("the two runs scored different test rows")
    c = paired_bootstrap(rows["user"], rows["label"], rows["score"], reference["score"], metric)
    if not c.defined:
        return "undefined"
    return f"{c.difference:+.4f} [{c.low:+.4f}, {c.high:+.4f}]" + ("" if c.significant else " not significant")


def report(records: dict, args: argparse.Namespace) -> str:
    reference = records.get("ItemRate")
    lines = [f"# TALLRec's learning curve on {args.dataset}", "",
             f"`python -m benchmarks.lora_curve --dataset {args.dataset} --train-rows {args.train_rows} "
             f"--valid-rows {args.valid_rows} --epochs {args.epochs} --variants {' '.join(args.variants)}"
             + (f" --collm {args.collm}" if args.collm else "") + f"` ({min(r['date'] for r in records.values())}, "
             f"2 CPU cores, SmolLM2-135M-Instruct, bf16). {args.train_rows} seeded train rows, "
             f"{args.valid_rows} seeded valid rows and as many test rows; every epoch sees every train row.", ""]
    for name, rec in records.items():
        if name in REFERENCES or not rec["history"]:
            continue
        what = json.dumps(VARIANTS[name]) if name in VARIANTS else "the CIE stage, per epoch"
        lines += [f"## {name}: {what}, {rec['seconds'] / 60:.0f} min", "",
                  "| epoch | train rows AUC | mean loss | label entropy | valid AUC |", "|---|---|---|---|---|"]
        for h in rec["history"]:
            lines.append(f"| {h['epoch']} | {fmt(h.get('train_auc'))} | {fmt(h.get('train_loss'))} | "
                         f"{fmt(h.get('label_entropy'))} | {fmt(h.get('valid', {}).get('auc'))} |")
        lines.append("")
    lines += ["## The best epoch of each, on the test rows", "",
              "| run | valid AUC | test AUC | test UAUC | AUC − ItemRate | UAUC − ItemRate |", "|---|---|---|---|---|---|"]
    for name, rec in records.items():
        test, valid = rec["test_result"], rec["best_valid_result"]
        versus = ["", ""]
        if reference is not None and name != "ItemRate" and name != "Pop":
            versus = [against(rec["test_rows"], reference["test_rows"], m) for m in ("auc", "uauc")]
        lines.append(f"| {name} | {fmt(valid.get('auc'))} | {fmt(test.get('auc'))} | {fmt(test.get('uauc'))} | "
                     f"{versus[0]} | {versus[1]} |")
    collm = records.get(COLLM)
    if collm is not None:
        test, source = collm["test_result"], collm["source_test_result"]
        lines += ["", f"## {COLLM}: the CIE stage from {args.collm}'s LoRA ({args.collm_rows} of the same train rows, "
                  f"3 epochs, {collm['seconds'] / 60:.0f} min)", "",
                  "| | AUC | UAUC | warm AUC | cold AUC |", "|---|---|---|---|---|"]
        for name, result in ((COLLM, test), ("MF (its source)", source), (args.collm, records[args.collm]["test_result"]),
                             ("paper: TALLRec, Vicuna-7B", {"auc": 0.7097, "uauc": 0.6818})):
            lines.append(f"| {name} | {fmt(result.get('auc'))} | {fmt(result.get('uauc'))} | {fmt(result.get('warm_auc'))} | "
                         f"{fmt(result.get('cold_auc'))} |")
        lines += ["", "| CoLLM-MF against | AUC | UAUC |", "|---|---|---|"]
        for name, rows in (("MF (its source)", collm["source_test_rows"]), (args.collm, records[args.collm]["test_rows"]),
                           ("ItemRate", reference["test_rows"] if reference else None)):
            if rows is not None:
                lines.append(f"| {name} | {against(collm['test_rows'], rows, 'auc')} | {against(collm['test_rows'], rows, 'uauc')} |")
    lines += ["", "Intervals: 95% paired bootstrap over users (1,000 draws); Pop counts every train row, "
              "ItemRate only the sampled ones."]
    return "\n".join(lines) + "\n"


def plot(records: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rec in records.items():
        points = [(h["epoch"], h["valid"]["auc"]) for h in rec["history"] if "valid" in h and name not in REFERENCES]
        if points:
            ax.plot(*zip(*points), marker="o", label=name)
    for name in REFERENCES:
        if name in records:
            ax.axhline(records[name]["best_valid_result"]["auc"], linestyle="--", color="grey" if name == "Pop" else "black",
                       label=f"{name} (valid)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation AUC")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m-collm")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--valid-rows", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--stopping-step", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["K4"], choices=sorted(VARIANTS))
    parser.add_argument("--collm", choices=sorted(VARIANTS), help="CoLLM-MF from this variant's LoRA")
    parser.add_argument("--collm-rows", type=int, default=800)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parse_args(parser)
    if args.step:
        run_step(args.step, args)
        return
    if not available([args.dataset]):
        return
    names = [*REFERENCES, *args.variants, *([COLLM] if args.collm else [])]
    records = {name: rec for name in names if (rec := record(name, args)) is not None}
    OUT.mkdir(parents=True, exist_ok=True)
    text = report(records, args)
    (OUT / f"{args.dataset}.md").write_text(text)
    plot(records, OUT / f"{args.dataset}.png")
    print(text)


if __name__ == "__main__":
    main()
