"""Training speed of the LLM stages, default LLM (SmolLM2-135M-Instruct), CPU or GPU, in each
compute dtype (``llm_compute_dtype``; float32 against bf16 by default), with the ratios:

    python -m benchmarks.training_speed [--dataset ml-1m-collm] [--train-rows 96] [--valid-rows 256] [--stage1-batches 12]
        [--compute-dtypes float32 bfloat16] [--baselines]

- stage-2 epoch: the same --train-rows train rows (seeded sample) in train_batch_size batches,
  forward + backward + AdamW step on the CIE (LLM and LoRA frozen), with the prefix store: its
  first epoch encodes every prefix, later (stored) epochs read them;
- validation pass: --valid-rows valid rows (sorted by user and time, as the plugin evaluates),
  eval_batch_size rows per batch, no autograd, with the store;
- stage-1 batches: the first --stage1-batches batches of an epoch of the whole train split from
  the prefix-grouped loader, forward + backward + AdamW step on LoRA;
- LoRA-stage epochs (TALLRec, text prompts): --lora-rows seeded train rows for --lora-epochs
  epochs with LoRA on every layer (``lora_layers`` 0: the paper's, and the engine's shared prefixes)
  and on the top K layers (--lora-layers; the frozen layers below run once per prompt): rows/s of
  the first and of the later epochs, and the peak memory above the loaded model.
  ``--lora-only`` measures this part alone.
``--baselines`` also measures what the engine's cross-batch parts are compared with: stage 2 and
validation without a store, stage 1 from RecBole's shuffled loader.
Prints rows/s per epoch/pass/loader, the ratios, the store's hit rate and size.
"""
from __future__ import annotations

import argparse
import time

from benchmarks.common import PeakMemory, build_llm, parse_args


def build(dataset: str, store_mb: int, args, dtype: str):
    import torch

    config, model, train, valid, _ = build_llm("CoLLM", dataset, {
        "stage": "cie", "prefix_store_mb": store_mb, "cf_checkpoint": None, "llm_compute_dtype": dtype})
    generator = torch.Generator().manual_seed(0)
    train_rows = train.inter_feat[torch.randperm(len(train), generator=generator)[: args.train_rows]]
    valid_rows = valid.inter_feat[torch.arange(min(args.valid_rows, len(valid)))]
    return config, model, train_rows, valid_rows


def stage1(dataset: str, grouped: bool, batches: int, dtype: str) -> float:
    """rows/s of LoRA training over the first ``batches`` batches of one epoch's loader."""
    import itertools

    import torch

    from recbole_collm import Config
    from recbole_collm.data import CollmDataset
    from recbole_collm.data.utils import data_preparation
    from recbole_collm.model.llm_recommender.collm import CoLLM

    config = Config(model="CoLLM", dataset=dataset, config_dict={
        "stage": "lora", "train_rows_limit": None, "eval_rows_limit": None, "state": "WARNING",
        "show_progress": False, "prefix_grouped_batches": grouped, "cf_checkpoint": None, "llm_compute_dtype": dtype})
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


def lora_epochs(args, dtype: str, layers: int) -> dict:
    """rows/s per epoch of TALLRec's LoRA training on the same seeded rows, and peak memory."""
    import torch

    config, model, train, _, _ = build_llm("TALLRec", args.dataset, {"lora_layers": layers or None, "llm_compute_dtype": dtype})
    rows = train.inter_feat[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: args.lora_rows]]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    with PeakMemory() as memory:
        speeds = [epoch(model, optimizer, rows, config["train_batch_size"]) for _ in range(args.lora_epochs)]
    print(f"{dtype} LoRA on {'every layer' if not layers else f'the top {layers} layers'}: epochs "
          + ", ".join(f"{r:.2f}" for r in speeds) + f" rows/s; peak memory +{memory.mib:.0f} MiB"
          + (f"; {model.lower.summary()}" if model.lower is not None else ""), flush=True)
    return {"epochs": speeds, "mib": memory.mib}


def lora_table(args, dtype: str) -> None:
    figures = {layers: lora_epochs(args, dtype, layers) for layers in [0, *args.lora_layers]}
    today = figures[0]["epochs"][-1]
    print(f"\n{dtype}, {args.lora_rows} rows × {args.lora_epochs} epochs\n"
          "| LoRA on | first epoch rows/s | later epochs rows/s | later / every layer's | peak memory MiB |\n|---|---|---|---|---|")
    for layers, f in figures.items():
        later = sum(f["epochs"][1:]) / max(1, len(f["epochs"]) - 1)
        print(f"| {'every layer' if not layers else f'top {layers}'} | {f['epochs'][0]:.2f} | {later:.2f} | "
              f"{later / today:.2f}x | {f['mib']:.0f} |")


def measure(args, dtype: str) -> dict:
    """Every figure in one compute dtype."""
    import torch

    figures = {}
    for label, store_mb in ((("no store", 0),) if args.baselines else ()) + (("store", 2048),):
        config, model, train_rows, valid_rows = build(args.dataset, store_mb, args, dtype)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        figures[label] = {
            "epochs": [epoch(model, optimizer, train_rows, config["train_batch_size"]) for _ in range(args.epochs)],
            "passes": [validation(model, valid_rows, config["eval_batch_size"]) for _ in range(2)],
        }
        store = model.prefix_store
        print(f"{dtype} {label}: stage-2 epochs " + ", ".join(f"{r:.2f}" for r in figures[label]["epochs"]) + " rows/s; "
              "validation passes " + ", ".join(f"{r:.2f}" for r in figures[label]["passes"]) + " rows/s"
              + (f"; {store.summary()}" if store is not None else ""), flush=True)
        del model, optimizer
    for grouped in ((False,) if args.baselines else ()) + (True,):
        label = "grouped" if grouped else "shuffled"
        figures[label] = stage1(args.dataset, grouped, args.stage1_batches, dtype)
        print(f"{dtype} stage 1 {label}: {figures[label]:.2f} rows/s", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m-collm")
    parser.add_argument("--train-rows", type=int, default=96)
    parser.add_argument("--valid-rows", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--stage1-batches", type=int, default=12)
    parser.add_argument("--compute-dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--baselines", action="store_true", help="also without the store and from RecBole's shuffled loader")
    parser.add_argument("--lora-rows", type=int, default=200)
    parser.add_argument("--lora-epochs", type=int, default=3)
    parser.add_argument("--lora-layers", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--lora-only", action="store_true", help="only the LoRA-stage epochs")
    args = parse_args(parser)
    for dtype in args.compute_dtypes:
        lora_table(args, dtype)
    if args.lora_only:
        return
    figures = {dtype: measure(args, dtype) for dtype in args.compute_dtypes}
    rows = [("stage-1 batches (grouped loader)", lambda f: f["grouped"]),
            ("stage-2 first epoch (store)", lambda f: f["store"]["epochs"][0]),
            ("stage-2 stored epoch", lambda f: f["store"]["epochs"][-1]),
            ("first validation pass (store)", lambda f: f["store"]["passes"][0]),
            ("validation pass after the first", lambda f: f["store"]["passes"][-1])]
    if args.baselines:
        rows += [("stage-1 batches (RecBole's shuffle)", lambda f: f["shuffled"]),
                 ("stage-2 epoch, no store", lambda f: f["no store"]["epochs"][-1]),
                 ("validation pass, no store", lambda f: f["no store"]["passes"][-1])]
    first, *others = args.compute_dtypes
    print(f"\n| figure (rows/s) | {' | '.join(args.compute_dtypes)} | " + " | ".join(f"{o} / {first}" for o in others) + " |")
    print("|---" * (1 + 2 * len(others) + 1) + "|")
    for name, get in rows:
        values = [get(figures[d]) for d in args.compute_dtypes]
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " | "
              + " | ".join(f"{v / values[0]:.2f}x" for v in values[1:]) + " |")
    if args.baselines:
        for dtype in args.compute_dtypes:
            f = figures[dtype]
            print(f"{dtype}: stored epoch / no store {f['store']['epochs'][-1] / f['no store']['epochs'][-1]:.2f}x, "
                  f"validation after the first / no store {f['store']['passes'][-1] / f['no store']['passes'][-1]:.2f}x, "
                  f"grouped / shuffled stage 1 {f['grouped'] / f['shuffled']:.2f}x")


if __name__ == "__main__":
    main()
