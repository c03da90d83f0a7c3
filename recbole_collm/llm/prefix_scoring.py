"""Shared-prefix scoring: rows whose prompts share a prefix (same user, same fitted history) encode
it once; every row's suffix (target title, item slot, answer cue) then runs against the prefix's
cached keys/values. Exact: a causal LM's prefix states do not depend on what follows them.

Layout per forward: prefixes are right-padded (their pad positions see real tokens, so no row is
ever fully masked), suffixes right-padded after the full prefix width, with the prefix's pad
columns masked and positions continuing from each row's true prefix length; the hidden state is
read at each row's last real suffix token.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recbole_collm.llm.prompts import PromptBuilder


@dataclass
class SplitBatch:
    """A batch of prompts as distinct prefixes plus one suffix per row."""

    prefixes: list[tuple[int, ...]]
    group: np.ndarray  # row -> index into prefixes
    suffixes: list[list[int]]
    user_pos: np.ndarray  # slot positions inside each row's suffix (-1: none)
    item_pos: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.suffixes)


def split_batch(prompts: PromptBuilder, history: torch.Tensor, length: torch.Tensor, target: torch.Tensor) -> SplitBatch:
    """Group rows by their exact prefix token ids (so a history cut by ``max_prompt_tokens``
    differently for two targets never shares a prefix it should not)."""
    history, length, target = history.cpu().numpy(), length.cpu().numpy(), target.cpu().numpy()
    index: dict[tuple[int, ...], int] = {}
    group = np.empty(len(target), dtype=np.int64)
    suffixes, user_pos, item_pos = [], np.empty(len(target), np.int64), np.empty(len(target), np.int64)
    for r, (h, n, t) in enumerate(zip(history, length, target)):
        prefix, suffix, upos, ipos = prompts.split_row(h[:n], int(t))
        group[r] = index.setdefault(prefix, len(index))
        suffixes.append(suffix)
        user_pos[r], item_pos[r] = upos, ipos
    return SplitBatch(list(index), group, suffixes, user_pos, item_pos)


class PrefixScorer:
    """Last-position hidden states of a decoder for a :class:`SplitBatch`.

    ``prefix_batch_size`` distinct prefixes are encoded per forward (sorted by length, to keep
    padding low), then their rows' suffixes in batches of ``llm_batch_size`` (sorted by
    length). When all rows of a suffix batch share one prefix its keys/values are expanded, not
    copied; the decoder's cache still concatenates them with the suffix's (one copy per layer).
    """

    def __init__(self, decoder, embedding, placeholder_id: int, prefix_batch_size: int = 16, llm_batch_size: int = 32):
        self.decoder, self.embedding, self.placeholder_id = decoder, embedding, placeholder_id
        self.prefix_batch_size = max(1, int(prefix_batch_size))
        self.llm_batch_size = max(1, int(llm_batch_size))

    def hidden(
        self,
        split: SplitBatch,
        user_vec: torch.Tensor | None = None,
        item_vec: torch.Tensor | None = None,
        prefix_grad: bool = True,
    ) -> torch.Tensor:
        """Hidden state at each row's last token, in row order. ``user_vec``/``item_vec`` (rows ×
        hidden) go into the ID slots. ``prefix_grad=False`` encodes prefixes without autograd
        (exact when nothing before the first slot is trainable, e.g. the CIE stage)."""
        device = self.embedding.weight.device
        prefix_len = np.array([len(p) for p in split.prefixes])
        rows_of = [[] for _ in split.prefixes]
        for r, g in enumerate(split.group):
            rows_of[g].append(r)
        order = np.argsort(-prefix_len, kind="stable")
        done_rows, done_hidden = [], []
        for start in range(0, len(order), self.prefix_batch_size):
            chunk = order[start : start + self.prefix_batch_size]
            with torch.set_grad_enabled(prefix_grad and torch.is_grad_enabled()):
                kv, prefix_mask = self._encode_prefixes([split.prefixes[g] for g in chunk], device)
            local = {int(g): k for k, g in enumerate(chunk)}
            rows = [r for g in chunk for r in rows_of[g]]
            rows.sort(key=lambda r: -len(split.suffixes[r]))
            for s in range(0, len(rows), self.llm_batch_size):
                part = rows[s : s + self.llm_batch_size]
                slots = torch.tensor([local[int(split.group[r])] for r in part], device=device)
                hidden = self._run_suffixes(split, part, slots, kv, prefix_mask, prefix_len[chunk], user_vec, item_vec)
                done_rows += part
                done_hidden.append(hidden)
        hidden = torch.cat(done_hidden)
        index = torch.tensor(done_rows, device=device)
        out = hidden.new_zeros((split.rows, hidden.shape[-1]))
        return out.index_copy(0, index, hidden)

    def _encode_prefixes(self, prefixes: list[tuple[int, ...]], device) -> tuple[list, torch.Tensor]:
        width = max(len(p) for p in prefixes)
        ids = torch.full((len(prefixes), width), self.placeholder_id, dtype=torch.long)
        mask = torch.zeros((len(prefixes), width), dtype=torch.long)
        for b, p in enumerate(prefixes):
            ids[b, : len(p)] = torch.tensor(p, dtype=torch.long)
            mask[b, : len(p)] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = torch.arange(width, device=device).expand(len(prefixes), -1)
        out = self.decoder(inputs_embeds=self.embedding(ids), attention_mask=mask, position_ids=positions, use_cache=True)
        cache = out.past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers], mask

    def _run_suffixes(self, split, part, slots, kv, prefix_mask, prefix_len, user_vec, item_vec) -> torch.Tensor:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        device = prefix_mask.device
        n, width = len(part), max(len(split.suffixes[r]) for r in part)
        ids = torch.full((n, width), self.placeholder_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        lengths = torch.empty(n, dtype=torch.long)
        for b, r in enumerate(part):
            suffix = split.suffixes[r]
            ids[b, : len(suffix)] = torch.tensor(suffix, dtype=torch.long)
            mask[b, : len(suffix)] = 1
            lengths[b] = len(suffix)
        ids, mask, lengths = ids.to(device), mask.to(device), lengths.to(device)
        embeds = self.embedding(ids)
        rows = torch.tensor(part, device=device)
        for vectors, positions in ((user_vec, split.user_pos), (item_vec, split.item_pos)):
            if vectors is not None:
                pos = torch.as_tensor(positions[part], device=device)
                embeds = splice(embeds, pos, vectors[rows].to(embeds.dtype))
        shared = bool((slots == slots[0]).all())
        cache = DynamicCache()
        for keys, values in kv:
            layer = DynamicLayer()
            layer.lazy_initialization(keys, values)
            if shared:  # one prefix for the whole batch: a view, no copy
                layer.keys = keys[slots[:1]].expand(n, -1, -1, -1)
                layer.values = values[slots[:1]].expand(n, -1, -1, -1)
            else:
                layer.keys, layer.values = keys[slots], values[slots]
            cache.layers.append(layer)
        attention = torch.cat([prefix_mask[slots], mask], dim=1)
        start = torch.as_tensor(prefix_len, device=device)[slots]
        positions = start.unsqueeze(1) + torch.arange(width, device=device)
        out = self.decoder(
            inputs_embeds=embeds, attention_mask=attention, position_ids=positions, past_key_values=cache, use_cache=True
        )
        return out.last_hidden_state[torch.arange(n, device=device), lengths - 1]


def splice(embeds: torch.Tensor, positions: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``embeds`` with ``vectors[b]`` at ``[b, positions[b]]``, differentiable w.r.t. vectors."""
    index = positions.view(-1, 1, 1).expand(-1, 1, embeds.shape[-1])
    return embeds.scatter(1, index, vectors.unsqueeze(1))
