"""A bounded store of encoded prompt prefixes that lives across batches, epochs and validation
passes: when nothing before the first ID slot trains (the CIE stage, every evaluation), a prefix's
keys/values are the same every time it is met, so each distinct prefix is encoded once per run.

Keyed by the prefix token ids and a fingerprint of the LLM's weights (the sum of every parameter's
in-place version counter, which an optimizer step or a ``load_state_dict`` bumps): a changed weight
empties the store before the next lookup, so a stale entry is never read. Entries are held in
``dtype`` (half precision by default: a ~165-token SmolLM2 prefix is ~3.8 MB) and evicted least
recently used beyond ``max_mb``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch


class PrefixStore:
    """``prefix ids → per-layer (keys, values)`` of one prefix, ``[kv_heads, length, head_dim]``."""

    def __init__(self, max_mb: float, dtype: torch.dtype = torch.float16):
        self.max_bytes = int(max_mb * 2**20)
        self.dtype = dtype
        self.entries: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0
        self._fingerprint: int | None = None

    def check_weights(self, module: torch.nn.Module) -> None:
        """Empty the store when any weight of ``module`` changed since the last call."""
        fingerprint = sum(p._version for p in module.parameters()) + id(module)
        if fingerprint != self._fingerprint:
            self.clear()
            self._fingerprint = fingerprint

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def get(self, prefix: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        entry = self.entries.get(prefix)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(prefix)
        return entry

    def put(self, prefix: tuple[int, ...], layers: list[tuple[torch.Tensor, ...]]) -> list[tuple[torch.Tensor, ...]]:
        """Store one prefix's keys/values per layer (or any tuples of tensors: the lower-layer cache
        keeps one state per prompt), converted to the store's dtype and detached; returns the stored
        tensors, which the caller reads so that a first pass and later ones agree."""
        entry = [tuple(t.detach().to(self.dtype).contiguous() for t in layer) for layer in layers]
        size = _nbytes(entry)
        if prefix in self.entries or size > self.max_bytes:
            return entry
        while self.bytes + size > self.max_bytes and self.entries:
            _, old = self.entries.popitem(last=False)
            self.bytes -= _nbytes(old)
            self.evictions += 1
        self.entries[prefix] = entry
        self.bytes += size
        return entry

    @property
    def hit_rate(self) -> float:
        looked = self.hits + self.misses
        return self.hits / looked if looked else 0.0

    def summary(self) -> str:
        return (f"prefix store: {self.hits:,} hits, {self.misses:,} misses (hit rate {self.hit_rate:.1%}), "
                f"{len(self.entries):,} prefixes, {self.bytes / 2**20:.0f} of {self.max_bytes / 2**20:.0f} MB, "
                f"{self.evictions:,} evicted")


def _nbytes(entry: list[tuple[torch.Tensor, ...]]) -> int:
    return sum(t.numel() * t.element_size() for layer in entry for t in layer)
