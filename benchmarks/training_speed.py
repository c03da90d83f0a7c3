"""Training speed of the engine's cross-batch parts, default LLM (SmolLM2-135M-Instruct), CPU or GPU:
the prefix store (stage-2 epochs and validation passes after the first, against today's
shared-prefix path without a store) and prefix-grouped batches (stage 1, against RecBole's
shuffled batches).

    python benchmarks/training_speed.py [--dataset ml-1m-collm] [--train-rows 96] [--valid-rows 256] [--stage1-batches 12]

- stage-2 epoch: the same --train-rows train rows (seeded sample) in train_batch_size batches,
  forward + backward + AdamW step on the CIE (LLM and LoRA frozen); the store's first epoch
  encodes every prefix, later epochs read them;
- validation pass: --valid-rows valid rows (sorted by user and time, as the plugin evaluates),
  eval_batch_size rows per batch, no autograd. Without a store the rows of one user share a prefix
  through <UserID> (today's path); with it the prefix ends before <UserID> and is reused.
- stage-1 batches: the first --stage1-batches batches of an epoch of the whole train split, from
  the grouped loader and from RecBole's shuffled one, forward + backward + AdamW step on LoRA.
Prints rows/s per epoch/pass/loader, the ratios, the store's hit rate and size.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import build_llm, parse_args  # noqa: E402


def build(dataset: str, store_mb: int, args):
    import torch

    config, model, train, valid, _ = build_llm("CoLLM", dataset, {
        "stage": "cie", "prefix_store_mb": store_mb, "cie_checkpoint": None})
    generator = torch.Generator().manual_seed(0)
    train_rows = train.inter_feat[torch.randperm(len(train), generator=generator)[: args.train_rows]]
    valid_rows = valid.inter_feat[torch.arange(min(args.valid_rows, len(valid)))]
    return config, model, train_rows, valid_rows


def stage1(dataset: str, grouped: bool, batches: int) -> float:
    """rows/s of LoRA training over the first ``batches`` batches of one epoch's loader."""
    import itertools

    import torch

    from recbole_collm import Config
    from recbole_collm.data import CollmDataset
    from recbole_collm.data.utils import data_preparation
    from recbole_collm.model.llm_recommender.collm import CoLLM

    config = Config(model="CoLLM", dataset=dataset, config_dict={
        "stage": "lora", "train_rows_limit": None, "eval_rows_limit": None, "state": "WARNING",
        "show_progress": False, "prefix_grouped_batches": grouped, "cie_checkpoint": None})
    data = CollmDataset(config)
    train, _, _ = data_preparation(config, data)
    torch.manual_seed(0)
    model = CoLLM(config, train._dataset)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    rows, start = 0, time.perf_counter()
    for batch in itertools.islice(train, batches):
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()
        rows += len(batch)
    return rows / (time.perf_counter() - start)


def epoch(model, optimizer, rows, batch_size: int) -> float:
    model.train()
    start = time.perf_counter()
    for s in range(0, len(rows), batch_size):
        optimizer.zero_grad()
        model.calculate_loss(rows[s : s + batch_size]).backward()
        optimizer.step()
    return len(rows) / (time.perf_counter() - start)


def validation(model, rows, batch_size: int) -> float:
    import torch

    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(rows), batch_size):
            model.predict(rows[s : s + batch_size])
    return len(rows) / (time.perf_counter() - start)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m-collm")
    parser.add_argument("--train-rows", type=int, default=96)
    parser.add_argument("--valid-rows", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--stage1-batches", type=int, default=12)
    args = parse_args(parser)
    figures = {}
    for label, store_mb in (("no store", 0), ("store", 2048)):
        config, model, train_rows, valid_rows = build(args.dataset, store_mb, args)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        figures[label] = {
            "epochs": [epoch(model, optimizer, train_rows, config["train_batch_size"]) for _ in range(args.epochs)],
            "passes": [validation(model, valid_rows, config["eval_batch_size"]) for _ in range(2)],
        }
        store = model.prefix_store
        print(f"{label}: stage-2 epochs " + ", ".join(f"{r:.2f}" for r in figures[label]["epochs"]) + " rows/s; "
              "validation passes " + ", ".join(f"{r:.2f}" for r in figures[label]["passes"]) + " rows/s"
              + (f"; {store.summary()}" if store is not None else ""), flush=True)
    shuffled, grouped = (stage1(args.dataset, g, args.stage1_batches) for g in (False, True))
    print(f"stage 1: shuffled {shuffled:.2f} rows/s, grouped {grouped:.2f} rows/s", flush=True)
    base, new = figures["no store"], figures["store"]
    print("\n| figure | before rows/s | after rows/s | speed-up | goal |\n|---|---|---|---|---|")
    print(f"| stage-2 epoch after the first | {base['epochs'][-1]:.2f} | {new['epochs'][-1]:.2f} | "
          f"{new['epochs'][-1] / base['epochs'][-1]:.2f}x | >= 2x |")
    print(f"| stage-2 first epoch | {base['epochs'][0]:.2f} | {new['epochs'][0]:.2f} | {new['epochs'][0] / base['epochs'][0]:.2f}x | |")
    print(f"| validation pass after the first | {base['passes'][-1]:.2f} | {new['passes'][-1]:.2f} | "
          f"{new['passes'][-1] / base['passes'][-1]:.2f}x | >= 2.5x |")
    print(f"| stage-1 batches (grouped vs shuffled) | {shuffled:.2f} | {grouped:.2f} | {grouped / shuffled:.2f}x | >= 1.4x |")
    print(f"| first validation pass | {base['passes'][0]:.2f} | {new['passes'][0]:.2f} | {new['passes'][0] / base['passes'][0]:.2f}x | |")


if __name__ == "__main__":
    main()
