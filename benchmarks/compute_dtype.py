"""Which bf16 mechanism the LLM models use, measured through the plugin's own CoLLM (default LLM,
SmolLM2-135M-Instruct, LoRA r 8 on q/v): float32; bf16 autocast over float32 weights
(``llm_compute_dtype: bfloat16``, ``llm_dtype: float32``); bf16 autocast with the decoder's linear
layers held in bf16 and the embeddings and norms in float32 (``llm_dtype: auto``, the default);
bf16 autocast over a whole-bf16 model (``llm_dtype: bfloat16``).

    python -m benchmarks.compute_dtype [--dataset ml-1m-collm] [--batches 3] [--score-rows 128]

- stage-1 step: forward + backward + AdamW on LoRA over prefix-grouped train batches (the first
  batch is a warm-up; the median of --batches after it);
- scoring: --score-rows validation rows, no autograd, shared-prefix path without a store.
Prints seconds, the ratio to float32, the largest score difference to float32 and the cosine of
the first step's LoRA gradient to float32's.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time

from benchmarks.common import parse_args

MECHANISMS = {
    "float32": {"llm_compute_dtype": "float32", "llm_dtype": "float32"},
    "bf16 autocast, float32 weights": {"llm_compute_dtype": "bfloat16", "llm_dtype": "float32"},
    "bf16 autocast, bf16 linear layers (auto)": {"llm_compute_dtype": "bfloat16", "llm_dtype": "auto"},
    "bf16 autocast, whole model bf16": {"llm_compute_dtype": "bfloat16", "llm_dtype": "bfloat16"},
}


def measure(dataset: str, settings: dict, args) -> tuple[float, float, list[float], "torch.Tensor"]:
    import torch

    from recbole_collm import Config
    from recbole_collm.data import CollmDataset
    from recbole_collm.data.utils import data_preparation
    from recbole_collm.model.llm_recommender.collm import CoLLM

    config = Config(model="CoLLM", dataset=dataset, config_dict={
        "stage": "lora", "train_rows_limit": None, "eval_rows_limit": None, "state": "WARNING", "show_progress": False,
        "cf_checkpoint": None, "prefix_store_mb": 0, **settings})
    train, valid, _ = data_preparation(config, CollmDataset(config))
    torch.manual_seed(0)
    model = CoLLM(config, train._dataset)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    seconds, first_grad = [], None
    for batch in itertools.islice(train, args.batches + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        if first_grad is None:
            first_grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    model.eval()
    rows = valid._dataset.inter_feat[torch.arange(min(args.score_rows, len(valid._dataset)))]
    with torch.no_grad():
        model.predict(rows[torch.arange(8)])  # warm-up
        start = time.perf_counter()
        scores = model.logits(rows)
        scoring = time.perf_counter() - start
    return statistics.median(seconds[1:]), scoring, scores.tolist(), first_grad


def main() -> None:
    import numpy as np
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m-collm")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--score-rows", type=int, default=128)
    args = parse_args(parser)
    figures = {}
    for name, settings in MECHANISMS.items():
        figures[name] = measure(args.dataset, settings, args)
        print(f"{name}: stage-1 step {figures[name][0]:.2f} s, scoring {figures[name][1]:.2f} s", flush=True)
    step0, score0, reference, grad0 = figures["float32"]
    print(f"\n{args.dataset}; stage-1 step: median of {args.batches} prefix-grouped batches of 8 rows; "
          f"scoring: {args.score_rows} validation rows\n")
    print("| mechanism | stage-1 step s | speed-up | scoring s | speed-up | max score difference to float32 | "
          "LoRA gradient cosine to float32 |\n|---|---|---|---|---|---|---|")
    for name, (step, score, scores, grad) in figures.items():
        diff = float(np.abs(np.array(scores) - np.array(reference)).max())
        cosine = float(torch.nn.functional.cosine_similarity(grad, grad0, dim=0))
        print(f"| {name} | {step:.2f} | {step0 / step:.2f}x | {score:.2f} | {score0 / score:.2f}x | {diff:.3f} | {cosine:.3f} |")


if __name__ == "__main__":
    main()
