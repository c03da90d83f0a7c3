"""The frozen lower layers of a decoder computed once per prompt (``lora_layers``).

With LoRA on the top K layers only, every layer below them is frozen and sees nothing that trains:
for a text prompt (no ID slot) its output — the residual stream entering the first LoRA layer — is
the same in every epoch and every validation pass. :class:`LowerLayerCache` keeps that state per
prompt (its token ids), so a prompt's lower layers run once per run and every later pass runs (and
back-propagates through) the top K layers only.

Exact up to the dtype the states are kept in (the compute dtype; float32 keeps them exactly): the
top layers read the same residual stream, positions and mask as in one forward through the whole
decoder. The decoder's own forward runs both halves (its rotary embeddings and mask builder),
with its layer list cut at the first LoRA layer; a decoder whose forward transforms its input
embeddings (Gemma scales them) would read the kept states wrongly, so the cut is checked against
the whole forward once when the cache is built.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from recbole_collm.errors import InputError
from recbole_collm.model.llm.prefix_store import PrefixStore


@contextlib.contextmanager
def _layers(decoder, start: int, stop: int | None, norm: bool):
    """``decoder`` with only ``layers[start:stop]`` (and its final norm when ``norm``) for the
    duration: its forward then maps the residual stream entering layer ``start`` to what leaves
    layer ``stop - 1``. The modules are the decoder's own (autograd and LoRA as they are)."""
    layers, final_norm = decoder.layers, decoder.norm
    decoder.layers = nn.ModuleList(list(layers)[start:stop])
    if not norm:
        decoder.norm = nn.Identity()
    try:
        yield decoder
    finally:
        decoder.layers, decoder.norm = layers, final_norm


def top_layer_indices(n_layers: int, top: int | None) -> list[int] | None:
    """The layer indices LoRA goes on for ``lora_layers: top`` (the last ``top``); None = every
    layer (also when ``top`` covers them all: the default of a deep LLM on a shallow one)."""
    if not top or top >= n_layers:
        return None
    return list(range(n_layers - top, n_layers))


class LowerLayerCache:
    """Last-position hidden states of a decoder whose layers below ``cut`` are frozen: those layers
    run once per distinct prompt (kept in ``store``, in ``dtype``), the layers from ``cut`` up on
    every call."""

    def __init__(self, decoder, embedding, cut: int, max_mb: float, dtype: torch.dtype):
        self.decoder, self.embedding, self.cut = decoder, embedding, cut
        self.store = PrefixStore(max_mb, dtype)
        # the fingerprint covers the frozen part only (embedding and lower layers): the LoRA steps
        # above it never empty the store, a changed frozen weight does
        self._frozen = nn.ModuleList([embedding, *list(decoder.layers)[:cut]])

    def check(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> None:
        """Refuse a decoder whose cut forward differs from its whole forward (one small batch)."""
        with torch.no_grad():
            whole = self.decoder(inputs_embeds=self.embedding(ids), attention_mask=mask, position_ids=positions,
                                 use_cache=False).last_hidden_state
            lower = self._lower(ids, mask, positions)
            top = self._top(lower, mask, positions)
        if not torch.allclose(whole[:, -1].float(), top.float(), rtol=1e-3, atol=1e-3):
            raise InputError(f"lora_layers: this LLM's decoder ({type(self.decoder).__name__}) cannot be cut between "
                             f"layers (its forward changes the input embeddings); set lora_layers: ~")

    def _lower(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), _layers(self.decoder, 0, self.cut, norm=False) as lower:
            return lower(inputs_embeds=self.embedding(ids), attention_mask=mask, position_ids=positions,
                         use_cache=False).last_hidden_state

    def _top(self, states: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        with _layers(self.decoder, self.cut, None, norm=True) as top:
            return top(inputs_embeds=states, attention_mask=mask, position_ids=positions,
                       use_cache=False).last_hidden_state[:, -1]

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Last-position hidden states of left-padded ``ids`` (``mask``, ``positions`` as for the
        whole decoder); the lower layers' states from the store, the missing rows run once."""
        self.store.check_weights(self._frozen)
        keys = [tuple(row[m.bool()].tolist()) for row, m in zip(ids.cpu(), mask.cpu())]
        found = [self.store.get(k) for k in keys]
        missing = [b for b, entry in enumerate(found) if entry is None]
        if missing:
            index = torch.tensor(missing, device=ids.device)
            states = self._lower(ids[index], mask[index], positions[index])
            width = states.shape[1]
            for b, row_states in zip(missing, states):
                found[b] = self.store.put(keys[b], [(row_states[width - len(keys[b]) :],)])
        width = ids.shape[1]
        hidden = self.embedding.weight.new_zeros((len(keys), width, self.embedding.weight.shape[1]))
        for b, entry in enumerate(found):
            (row_states,) = entry[0]
            hidden[b, width - len(row_states) :] = row_states.to(hidden.dtype)
        return self._top(hidden, mask, positions)

    def summary(self) -> str:
        return self.store.summary().replace("prefix store", "lower-layer store", 1)
