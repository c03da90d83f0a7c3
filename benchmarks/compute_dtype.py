"""Which bf16 mechanism the LLM stages use: float32 weights, float32 weights under bf16 autocast, or
bf16 frozen weights under autocast (LoRA float32 in all three), default LLM (SmolLM2-135M-Instruct)
with LoRA (r 8, alpha 16, q/v), a batch of --batch random prompts × --tokens tokens:

    python benchmarks/compute_dtype.py [--batch 8] [--tokens 217] [--repeats 3] [--threads 2]

Prints the median seconds of a LoRA training step (forward + backward of the decoder's last
position) and of a no-grad scoring forward, and each mechanism's ratio to float32; the largest
last-position hidden-state difference to float32 says what the speed costs in accuracy.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import parse_args  # noqa: E402


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from recbole_collm.model.llm_recommender.llm.backbone import resolve_llm_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=217)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parse_args(parser)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = resolve_llm_path(None)
    ids = torch.randint(100, 40000, (args.batch, args.tokens))

    def median_seconds(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    figures, reference = {}, None
    for name, weights, autocast in (("float32", torch.float32, False), ("float32 weights + bf16 autocast", torch.float32, True),
                                    ("bf16 weights + bf16 autocast", torch.bfloat16, True)):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=weights)
        model.requires_grad_(False)
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
        torch.manual_seed(1)
        for n, p in model.named_parameters():  # the same adapter in every variant (B non-zero)
            if "lora_" in n:
                p.data = torch.randn(p.shape).mul_(0.02).to(p.dtype)
        decoder = model.get_base_model().model

        def forward(grad: bool) -> torch.Tensor:
            with torch.autocast("cpu", torch.bfloat16, enabled=autocast), torch.set_grad_enabled(grad):
                return decoder(input_ids=ids).last_hidden_state[:, -1].float()

        def step() -> None:
            model.zero_grad()
            forward(True).sum().backward()

        hidden = forward(False)
        reference = hidden if reference is None else reference
        figures[name] = (median_seconds(step), median_seconds(lambda: forward(False)), float((hidden - reference).abs().max()))
        lora_dtype = next(p.dtype for n, p in model.named_parameters() if "lora_A" in n)
        print(f"{name}: LoRA step {figures[name][0]:.2f} s, scoring {figures[name][1]:.2f} s, LoRA weights {lora_dtype}", flush=True)
        del model, decoder
    base = figures["float32"]
    print(f"\n{args.threads} threads, {args.batch} prompts x {args.tokens} tokens, median of {args.repeats}\n")
    print("| mechanism | LoRA step s | speed-up | scoring s | speed-up | max hidden difference to float32 |\n|---|---|---|---|---|---|")
    for name, (step_s, score_s, diff) in figures.items():
        print(f"| {name} | {step_s:.2f} | {base[0] / step_s:.2f}x | {score_s:.2f} | {base[1] / score_s:.2f}x | {diff:.3f} |")


if __name__ == "__main__":
    main()
