"""The precision the LLM computes in (``llm_compute_dtype``) and the dtype its frozen weights are
held in (``llm_dtype``): bf16 where the hardware computes bf16 natively, float32 elsewhere.

``llm_dtype: auto`` holds the decoder's linear layers in the compute dtype and the embeddings and
norms in float32: the linear layers run in bf16 without a per-use cast, while the residual stream
stays float32, where the small contributions of the CIE's two tokens are not drowned by SmolLM2's
large activations. Everything that trains (LoRA, the CIE, projectors, token rows) stays float32
and autocast runs it in bf16 inside the LLM; scores and losses are computed in float32. The
measurements behind this choice: docs/performance.md, "Precision". A CPU without native bf16
emulates it slower than float32, so ``auto`` picks float32 there and says so in one log line.
"""
from __future__ import annotations

import contextlib
import functools
import logging

import torch

from recbole_collm.errors import InputError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 (AVX-512 BF16, AMX), ARMv8.6 (/proc/cpuinfo "Features")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (read once per process)."""
    return any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)


def resolve_compute_dtype(setting: str | None, device: torch.device) -> tuple[torch.dtype, str]:
    """``(dtype, why)`` for ``llm_compute_dtype`` on ``device``; ``auto`` (or empty, e.g. a
    checkpoint saved before the setting existed) = bf16 where native, else float32."""
    setting = setting or "auto"
    kind = torch.device(device).type
    if setting == "float32":
        return torch.float32, "llm_compute_dtype: float32"
    if setting == "float16" and kind != "cuda":
        raise InputError(f"llm_compute_dtype: 'float16' needs a CUDA GPU (this run is on {kind}); use bfloat16 or float32")
    if setting in ("bfloat16", "float16"):
        return getattr(torch, setting), f"llm_compute_dtype: {setting}"
    if kind == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "llm_compute_dtype: auto -> bfloat16 (the GPU computes bf16)"
        return torch.float16, "llm_compute_dtype: auto -> float16 (the GPU has no bf16)"
    if kind == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16, "llm_compute_dtype: auto -> bfloat16 (the CPU computes bf16 natively)"
    return torch.float32, (f"llm_compute_dtype: auto -> float32 (this {kind.upper()} has no native bf16 "
                           f"({'/'.join(CPU_BF16_FLAGS)}); emulated bf16 would be slower)")


class Precision:
    """The LLM's compute dtype and the autocast context that applies it (a no-op in float32)."""

    def __init__(self, setting: str | None, device: torch.device, logger: logging.Logger | None = None,
                 weights: str | None = "auto"):
        self.device_type = torch.device(device).type
        self.dtype, why = resolve_compute_dtype(setting, device)
        # the frozen weights: ``llm_dtype: auto`` (or empty) = the decoder's linear layers in the
        # compute dtype, the rest (embeddings, norms: the residual stream) in float32
        auto = weights in (None, "auto")
        self.weights_dtype = torch.float32 if auto else DTYPES[weights]
        self.linear_dtype = self.dtype if auto and self.half else None
        held = (f"linear layers in {_name(self.linear_dtype)}, embeddings and norms in float32" if self.linear_dtype
                else _name(self.weights_dtype))
        (logger or logging.getLogger(__name__)).info(f"{why}; frozen LLM weights: {held}")

    def store_dtype(self, setting: str | None) -> torch.dtype:
        """``prefix_store_dtype``: ``auto`` (or empty) = the compute dtype when it is half precision
        (a stored prefix is read without a cast), else float16 (half float32's memory)."""
        if setting in (None, "auto"):
            return self.dtype if self.half else torch.float16
        return DTYPES[setting]

    @property
    def half(self) -> bool:
        return self.dtype != torch.float32

    def autocast(self):
        """The LLM's forward passes in ``dtype`` (trainable float32 parts included); a no-op in float32."""
        if not self.half:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
