"""Where the time of a stage-1 (LoRA) batch goes, prefix-grouped batches against RecBole's shuffled
ones, default LLM (SmolLM2-135M-Instruct), in one compute dtype:

    python -m benchmarks.grouped_batches [--dataset ml-1m-collm] [--batches 12] [--compute-dtype auto]

For the first --batches batches of one epoch from each loader (the first of each is a warm-up and
not counted): the distinct prefixes per batch, the tokens the decoder runs (prefix tokens once per
distinct prefix, suffix tokens once per row), the attention entries the packed suffixes compute
(their 4D mask is dense: every suffix token is scored against its prefix and its whole pack), and
seconds per batch (forward + backward + AdamW). Then the token-count bound of the speed-up against
the measured one, and the top operators of one profiled batch of each kind.
"""
from __future__ import annotations

import argparse
import itertools
import time

from benchmarks.common import parse_args


def run(dataset: str, grouped: bool, args) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from recbole_collm import Config
    from recbole_collm.data import CollmDataset
    from recbole_collm.data.utils import data_preparation
    from recbole_collm.model.llm.batching import split_batch
    from recbole_collm.model.llm_recommender.collm import CoLLM

    config = Config(model="CoLLM", dataset=dataset, config_dict={
        "stage": "lora", "train_rows_limit": None, "eval_rows_limit": None, "state": "WARNING", "show_progress": False,
        "prefix_grouped_batches": grouped, "cf_checkpoint": None, "prefix_store_mb": 0, "llm_compute_dtype": args.compute_dtype})
    train, _, _ = data_preparation(config, CollmDataset(config))
    torch.manual_seed(0)
    model = CoLLM(config, train._dataset)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    out = {"prefixes": 0, "prefix_tokens": 0, "suffix_tokens": 0, "attention": 0, "seconds": 0.0, "batches": 0}
    batches = list(itertools.islice(train, args.batches + 1))
    for k, batch in enumerate(batches):
        split = split_batch(model.prompts, batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], batch[model.ITEM_ID])
        start = time.perf_counter()
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()
        if k == 0:
            continue  # warm-up
        out["seconds"] += time.perf_counter() - start
        out["batches"] += 1
        out["prefixes"] += len(split.prefixes)
        out["prefix_tokens"] += sum(len(p) for p in split.prefixes)
        out["suffix_tokens"] += sum(len(s) for s in split.suffixes)
        for g, prefix in enumerate(split.prefixes):  # one pack per prefix (fewer rows than llm_batch_size)
            pack = sum(len(s) for s, grp in zip(split.suffixes, split.group) if grp == g)
            out["attention"] += pack * (len(prefix) + pack) + len(prefix) ** 2
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        optimizer.zero_grad()
        model.calculate_loss(batches[-1]).backward()
        optimizer.step()
    out["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m-collm")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--compute-dtype", default="auto")
    args = parse_args(parser)
    figures = {label: run(args.dataset, grouped, args) for label, grouped in (("shuffled", False), ("grouped", True))}
    print(f"\n{args.dataset}, llm_compute_dtype {args.compute_dtype}, {figures['grouped']['batches']} batches of 8 rows each\n")
    print("| loader | prefixes / batch | prefix tokens / batch | suffix tokens / batch | attention entries / batch | s / batch |")
    print("|---|---|---|---|---|---|")
    for label, f in figures.items():
        n = f["batches"]
        print(f"| {label} | {f['prefixes'] / n:.2f} | {f['prefix_tokens'] / n:.0f} | {f['suffix_tokens'] / n:.0f} | "
              f"{f['attention'] / n:,.0f} | {f['seconds'] / n:.2f} |")
    s, g = figures["shuffled"], figures["grouped"]
    tokens = (s["prefix_tokens"] + s["suffix_tokens"]) / (g["prefix_tokens"] + g["suffix_tokens"])
    print(f"\ntoken-count bound of the speed-up: {tokens:.2f}x; measured: {s['seconds'] / g['seconds']:.2f}x")
    for label, f in figures.items():
        print(f"\none profiled {label} batch:\n{f['profile']}")


if __name__ == "__main__":
    main()
