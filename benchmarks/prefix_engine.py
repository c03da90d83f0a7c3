"""Performance engine: plain full-prompt path vs shared-prefix path, side by side, default LLM, in
each compute dtype (``llm_compute_dtype``; float32 against bf16 by default).

    python -m benchmarks.prefix_engine [--dataset ml-1m-collm] [--split-rows 768] [--candidates 20 100] [--repeats 5]
        [--compute-dtypes float32 bfloat16]

Each figure runs in its own subprocess (clean peak-memory reading): the process loads the model
and data, then the measured work (its warm-up pass included: that is where the allocator grows)
runs while a thread samples RSS every 2 ms (CPU) or reads ``torch.cuda.max_memory_allocated``
(GPU). Peak = highest reading minus the reading before.

- candidates: one test row's prompt with N candidate items (one prefix, N suffixes), per --candidates;
- split: the first --split-rows rows of the test split (sorted by user and time, as the plugin
  evaluates them), in RecBole batches of eval_batch_size rows;
- train step: stage 2 (CIE; LLM and LoRA frozen), forward + backward on the same 8 train rows;
- CoLLM vs TALLRec: the split scoring with text-only prompts (TALLRec), shared-prefix path.
Prints samples/second, ratios (shared-prefix / plain per dtype, each dtype / the first per path)
and peaks; `--out` also writes them as markdown.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import ROOT, SHARED_DATA, PeakMemory, build_llm, parse_args, timed


def build(model_name: str, dataset: str, share_prefixes: bool, split_rows: int, dtype: str):
    import torch

    cuda = torch.cuda.is_available()
    config, model, train, _, test = build_llm(model_name, dataset, {
        "stage": "cie" if model_name == "CoLLM" else "lora", "share_prefixes": share_prefixes,
        "use_gpu": cuda, "llm_compute_dtype": dtype})
    test = test.inter_feat[torch.arange(min(split_rows, len(test)))]
    return config, model, train, test


def worker(scenario: str, path: str, dtype: str, args) -> dict:
    import torch
    from recbole.data.interaction import Interaction

    model_name = "TALLRec" if scenario == "split_tallrec" else "CoLLM"
    config, model, train, test = build(model_name, args.dataset, path == "shared-prefix", args.split_rows, dtype)
    device = config["device"]
    out = {"scenario": scenario, "path": path, "dtype": dtype, "device": str(device)}
    if scenario.startswith("candidates"):
        count = int(scenario.split(":")[1])
        model.eval()
        generator = torch.Generator().manual_seed(0)
        row = test[torch.tensor([len(test) // 2])]
        items = torch.randperm(model.n_items - 1, generator=generator)[:count] + 1
        batch = row.repeat_interleave(count)
        batch.update(Interaction({config["ITEM_ID_FIELD"]: items}))
        batch = batch.to(device)
        with torch.no_grad(), PeakMemory() as peak:
            model.predict(batch)  # warm-up (inside: the first pass is where the allocator grows)
            seconds = timed(lambda: model.predict(batch), args.repeats)
        out.update(rows=count, seconds=seconds)
    elif scenario in ("split", "split_tallrec"):
        model.eval()
        size = config["eval_batch_size"]
        scores = []

        def score_split():
            scores.clear()
            for start in range(0, len(test), size):
                scores.append(model.predict(test[torch.arange(start, min(start + size, len(test)))].to(device)).cpu())

        with torch.no_grad():
            with PeakMemory() as peak:
                seconds = timed(score_split, 1)
        out.update(rows=len(test), seconds=seconds, scores=torch.cat(scores).tolist())
    elif scenario == "train_step":
        model.train()
        generator = torch.Generator().manual_seed(0)
        batch = train.inter_feat[torch.randperm(len(train), generator=generator)[: config["train_batch_size"]]].to(device)

        def step():
            model.zero_grad()
            model.calculate_loss(batch).backward()

        with PeakMemory() as peak:
            step()  # warm-up
            seconds = timed(step, args.repeats)
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad and p.grad is not None])
        out.update(rows=len(batch), seconds=seconds, grad_norm=float(grads.norm()))
    out["peak_mib"] = peak.mib
    return out


def run_worker(scenario: str, path: str, dtype: str, args) -> dict:
    command = [sys.executable, "-m", "benchmarks.prefix_engine", "--worker", scenario, path, dtype, "--dataset", args.dataset,
               "--split-rows", str(args.split_rows), "--repeats", str(args.repeats)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{scenario} / {path} / {dtype} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="default: ml-1m-collm when ../shared/data has it, else ml-100k")
    parser.add_argument("--split-rows", type=int, default=768)
    parser.add_argument("--candidates", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compute-dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--out", default=None, help="also write the table here (markdown)")
    parser.add_argument("--worker", nargs=3, metavar=("SCENARIO", "PATH", "DTYPE"), help=argparse.SUPPRESS)
    args = parse_args(parser)
    if args.dataset is None:
        shared = SHARED_DATA / "ml-1m-collm"
        args.dataset = "ml-1m-collm" if shared.is_dir() else "ml-100k"
        if args.dataset == "ml-100k":
            print(f"{shared} not found: using ml-100k's test split")
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return

    import numpy as np

    dtypes = args.compute_dtypes
    scenarios = [f"candidates:{n}" for n in args.candidates] + ["split", "train_step"]
    results = {}
    for dtype in dtypes:
        for scenario in scenarios:
            for path in ("plain", "shared-prefix"):
                r = results[scenario, path, dtype] = run_worker(scenario, path, dtype, args)
                print(f"{dtype:9s} {scenario:15s} {path:13s} {r['rows'] / r['seconds']:8.2f} rows/s  peak {r['peak_mib']:7.1f} MiB", flush=True)
        results["split_tallrec", "shared-prefix", dtype] = run_worker("split_tallrec", "shared-prefix", dtype, args)

    names = {f"candidates:{n}": f"score {n} candidates of one user" for n in args.candidates}
    names.update(split=f"score {args.dataset} test ({results['split', 'plain', dtypes[0]]['rows']} rows)",
                 train_step="stage-2 training step (8 rows)")
    device = results["split", "plain", dtypes[0]]["device"]
    lines = [f"Device: {device}; default LLM (SmolLM2-135M-Instruct); median of {args.repeats} for candidates/train step, one pass for the split.", ""]
    for dtype in dtypes:
        lines += [f"llm_compute_dtype: {dtype}", "",
                  "| figure | plain rows/s | shared-prefix rows/s | speed-up | plain peak MiB | shared-prefix peak MiB |", "|---|---|---|---|---|---|"]
        for scenario, label in names.items():
            a, b = results[scenario, "plain", dtype], results[scenario, "shared-prefix", dtype]
            lines.append(f"| {label} | {a['rows'] / a['seconds']:.2f} | {b['rows'] / b['seconds']:.2f} | {a['seconds'] / b['seconds']:.2f}x | "
                         f"{a['peak_mib']:.0f} | {b['peak_mib']:.0f} |")
        split_plain, split_fast = results["split", "plain", dtype], results["split", "shared-prefix", dtype]
        tallrec = results["split_tallrec", "shared-prefix", dtype]
        max_diff = float(np.abs(np.array(split_plain["scores"]) - np.array(split_fast["scores"])).max())
        grad_rel = (abs(results["train_step", "plain", dtype]["grad_norm"] - results["train_step", "shared-prefix", dtype]["grad_norm"])
                    / results["train_step", "plain", dtype]["grad_norm"])
        lines += ["", f"CoLLM / TALLRec inference time on the same rows (shared-prefix path): {split_fast['seconds'] / tallrec['seconds']:.3f}x (paper: 1.125x)",
                  f"Split scores, plain vs shared-prefix: max |difference| {max_diff:.2e}; train-step gradient norm relative difference {grad_rel:.2e}", ""]
    if len(dtypes) > 1:
        first = dtypes[0]
        lines += [f"Compute dtype against {first} (rows/s ratio; same path):", "",
                  "| figure | path | " + " | ".join(f"{d} / {first}" for d in dtypes[1:]) + " |", "|---|---|" + "---|" * (len(dtypes) - 1)]
        for scenario, label in names.items():
            for path in ("plain", "shared-prefix"):
                base = results[scenario, path, first]["seconds"]
                lines.append(f"| {label} | {path} | " + " | ".join(f"{base / results[scenario, path, d]['seconds']:.2f}x" for d in dtypes[1:]) + " |")
        scores = {d: np.array(results["split", "shared-prefix", d]["scores"]) for d in dtypes}
        lines += ["", "Split scores against " + first + ": " + "; ".join(
            f"{d} max |difference| {np.abs(scores[d] - scores[first]).max():.2e}" for d in dtypes[1:])]
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
