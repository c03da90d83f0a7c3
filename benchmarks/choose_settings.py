"""Choose the CIE stage's learning rate and epoch count on validation rows (never test rows).

    python benchmarks/choose_settings.py --lora-checkpoint saved/TALLRec-....pth --cie-checkpoint saved/MF-....pth
        [--dataset ml-1m-collm] [--train-rows 800] [--valid-rows 600] [--epochs 3] [--lrs 0.001 0.003 0.01]

One CoLLM model (stage ``cie``, LoRA from a TALLRec run, CF vectors from an MF run) is trained
once per candidate ``cie_learning_rate`` from the same initial CIE weights, the same seeded train
rows in the same batch order, and scored on the same seeded validation rows after every epoch.
The model (and so its prefix store) is shared by the candidates: the LLM is frozen in this stage,
so every prefix is encoded once for the whole sweep. Prints validation AUC / UAUC per learning
rate and epoch, the best pair by validation AUC (``valid_metric``), and writes
``benchmarks/results/settings/<dataset>.json``.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, parse_args  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m-collm")
    parser.add_argument("--lora-checkpoint", required=True, help="a TALLRec (stage-1) checkpoint")
    parser.add_argument("--cie-checkpoint", required=True, help="a CF checkpoint (MF by default)")
    parser.add_argument("--train-rows", type=int, default=800)
    parser.add_argument("--valid-rows", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    parser.add_argument("--store-mb", type=int, default=6144, help="large enough for every train and valid prefix")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "settings"))
    args = parse_args(parser)

    from recbole.utils import init_logger

    from recbole_collm import Config
    from recbole_collm.quick_start import prepare
    from recbole_collm.trainer import LLMTrainer

    config = Config(model="CoLLM", dataset=args.dataset, config_dict={
        "stage": "cie", "lora_checkpoint": args.lora_checkpoint, "cie_checkpoint": args.cie_checkpoint,
        "train_rows_limit": args.train_rows, "train_rows_sample": "random", "eval_rows_limit": args.valid_rows,
        "epochs": args.epochs, "cie_epochs": args.epochs, "eval_step": 1, "stopping_step": args.epochs + 1,
        "prefix_store_mb": args.store_mb, "show_progress": True, "state": "INFO",
        "checkpoint_dir": str(ROOT / "benchmarks" / "results" / "settings" / "saved")})
    init_logger(config)
    _, (train, valid, _), model, _ = prepare(config)
    start_cie = copy.deepcopy(model.cie.state_dict())
    start_order = train.generator.get_state()
    rows = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def write(stopped: bool) -> None:
        """After every validation: a sweep stopped early keeps the rows it has."""
        best = max(rows, key=lambda r: r["valid_auc"])
        (out / f"{args.dataset}.json").write_text(json.dumps({
            "train_rows": len(train._dataset), "valid_rows": len(valid._dataset), "lrs": args.lrs,
            "epochs": args.epochs, "complete": not stopped, "rows": rows,
            "best": {"cie_learning_rate": best["cie_learning_rate"], "cie_epochs": best["epoch"]}}, indent=1) + "\n")

    for lr in args.lrs:
        model.cie.load_state_dict(start_cie)  # the LLM's weights stay as they are: the store stays valid
        train.generator.set_state(start_order)
        config["cie_learning_rate"] = lr
        trainer = LLMTrainer(config, model)

        def record(epoch: int, result: dict, _lr=lr) -> None:
            rows.append({"cie_learning_rate": _lr, "epoch": epoch + 1, "valid_auc": result["auc"],
                         "valid_uauc": result["uauc"], "seconds": time.perf_counter() - started})
            print(f"lr {_lr:g} epoch {epoch + 1}: valid AUC {result['auc']:.4f} UAUC {result['uauc']:.4f}", flush=True)
            write(stopped=len(rows) < len(args.lrs) * args.epochs)

        started = time.perf_counter()
        trainer.fit(train, valid, saved=False, show_progress=True, on_validation=record)
    best = max(rows, key=lambda r: r["valid_auc"])
    print(f"\n{args.dataset}: {len(train._dataset)} train rows, {len(valid._dataset)} valid rows "
          f"({model.prefix_store.summary()})")
    print("| cie_learning_rate | epoch | valid AUC | valid UAUC |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['cie_learning_rate']:g} | {r['epoch']} | {r['valid_auc']:.4f} | {r['valid_uauc']:.4f} |")
    print(f"best by valid AUC: cie_learning_rate {best['cie_learning_rate']:g}, cie_epochs {best['epoch']}")


if __name__ == "__main__":
    main()
