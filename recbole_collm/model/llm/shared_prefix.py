"""Shared-prefix scoring: rows whose prompts share a prefix (same user, same fitted history) encode
it once; every row's suffix (target title, item slot, answer cue) then runs against the prefix's
cached keys/values. Exact: a causal LM's prefix states do not depend on what follows them.

Layout: prefixes are right-padded in their forward (pad positions see real tokens, so no row is
ever fully masked). The suffixes of one prefix are then packed end to end into sequences of at
most ``PACK_TOKENS`` tokens, each run against that prefix's cache with a 4D mask (each suffix token
sees the real prefix tokens and the earlier tokens of its own suffix) and positions continuing from
the true prefix length; a row's hidden state is read at its suffix's last token.
"""
from __future__ import annotations

import numpy as np
import torch

from recbole_collm.compat import cache_kwargs, output_cache
from recbole_collm.model.llm.batching import SplitBatch, splice
from recbole_collm.model.llm.prefix_store import PrefixStore
from recbole_collm.model.llm.prompts import pad_ids

# The most suffix tokens packed into one sequence against a prefix: a pack's 4D mask is dense, so
# every suffix token is scored against the whole pack (masked); a prefix with more rows gets several
# packs, each reading the prefix's keys/values.
PACK_TOKENS = 256


class SharedPrefixEncoder:
    """Last-position hidden states of a decoder for a :class:`SplitBatch`.

    ``prefix_batch_size`` distinct prefixes are encoded per forward (sorted by length, to keep
    padding low), then their rows' suffixes, ``llm_batch_size`` rows per forward, with the
    suffixes of one prefix packed into one sequence: a prefix's keys/values are read by all its
    rows without being repeated per row (the decoder's cache still concatenates them with the
    suffix tokens', one copy per layer and pack).
    """

    def __init__(
        self, decoder, embedding, placeholder_id: int, prefix_batch_size: int = 16, llm_batch_size: int = 32,
        store: PrefixStore | None = None, compute_dtype: torch.dtype | None = None,
    ):
        self.decoder, self.embedding, self.placeholder_id = decoder, embedding, placeholder_id
        self.store = store  # prefixes encoded without autograd are kept there across calls
        # stored keys/values are read in the dtype the decoder computes in: a float32 copy under
        # bf16 autocast would turn every attention over the prefix into float32
        self.compute_dtype = compute_dtype or embedding.weight.dtype
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
        (exact when nothing before the first slot is trainable, e.g. the CIE stage); such prefixes
        are then taken from, or added to, the store when there is one (unless they hold the
        <UserID> slot, whose vector may train)."""
        device = self.embedding.weight.device
        prefix_len = np.array([len(p) for p in split.prefixes])
        rows_of = [[] for _ in split.prefixes]
        for r, g in enumerate(split.group):
            rows_of[g].append(r)
        # prefixes of similar length and with as many rows each go together: little padding in
        # the prefix forward and in the packed suffix forward
        group_rows = np.array([len(r) for r in rows_of])
        order = np.lexsort((-prefix_len, -group_rows))
        done_rows, done_hidden = [], []
        for start in range(0, len(order), self.prefix_batch_size):
            chunk = order[start : start + self.prefix_batch_size]
            grad = prefix_grad and torch.is_grad_enabled()
            user_pos = split.user_pos[split.first_row[chunk]]
            holds_user = bool(((user_pos >= 0) & (user_pos < prefix_len[chunk])).any())  # -1: no slot
            if self.store is not None and not grad and holds_user:
                kv, prefix_mask = self._stored_through_user(split, chunk, prefix_len[chunk], user_vec, device)
            elif self.store is not None and not grad:
                kv, prefix_mask = self._stored_prefixes([split.prefixes[g] for g in chunk], device)
            else:
                with torch.set_grad_enabled(grad):
                    kv, prefix_mask = self._encode_prefixes(split, chunk, prefix_len[chunk], user_vec, device)
            local = {int(g): k for k, g in enumerate(chunk)}
            rows = [r for g in chunk for r in sorted(rows_of[g], key=lambda r: len(split.suffixes[r]))]
            for s in range(0, len(rows), self.llm_batch_size):
                part = rows[s : s + self.llm_batch_size]
                hidden = self._run_packed(split, part, local, kv, prefix_mask, prefix_len[chunk], user_vec, item_vec)
                done_rows += part
                done_hidden.append(hidden)
        hidden = torch.cat(done_hidden)
        index = torch.tensor(done_rows, device=device)
        out = hidden.new_zeros((split.rows, hidden.shape[-1]))
        return out.index_copy(0, index, hidden)

    def _encode_prefixes(self, split: SplitBatch, chunk: np.ndarray, lengths: np.ndarray, user_vec, device) -> tuple[list, torch.Tensor]:
        rows = split.first_row[chunk]
        inside = (split.user_pos[rows] >= 0) & (split.user_pos[rows] < lengths)
        user = None
        if user_vec is not None and inside.any():  # the <UserID> slot is part of these prefixes
            assert inside.all(), "a prefix either holds the <UserID> slot for every row or for none"
            user = (torch.as_tensor(split.user_pos[rows], device=device), user_vec[torch.as_tensor(rows, device=device)])
        return self._encode_ids([split.prefixes[g] for g in chunk], device, user)

    def _encode_ids(self, prefixes: list[tuple[int, ...]], device, user: tuple | None = None) -> tuple[list, torch.Tensor]:
        """One right-padded forward over ``prefixes``; ``user`` = (slot positions, vectors)."""
        ids, mask = (t.to(device) for t in pad_ids(prefixes, self.placeholder_id, left=False))
        positions = torch.arange(ids.shape[1], device=device).expand(len(prefixes), -1)
        embeds = self.embedding(ids)
        if user is not None:
            embeds = splice(embeds, user[0], user[1].to(embeds.dtype))
        out = self.decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True)
        return [(layer.keys, layer.values) for layer in output_cache(out).layers], mask

    def _stored_prefixes(self, prefixes: list[tuple[int, ...]], device) -> tuple[list, torch.Tensor]:
        """``prefixes`` (none holding a slot) from the store, the missing ones encoded (in one
        forward) and stored first; laid out as :meth:`_encode_prefixes` returns them (right-padded)."""
        found = {p: self.store.get(p) for p in dict.fromkeys(prefixes)}  # users with one history: one lookup
        missing = [p for p, entry in found.items() if entry is None]
        if missing:
            with torch.no_grad():
                kv, _ = self._encode_ids(missing, device)
            for b, p in enumerate(missing):
                found[p] = self.store.put(p, [(keys[b, :, : len(p)], values[b, :, : len(p)]) for keys, values in kv])
        entries = [found[p] for p in prefixes]
        lengths = np.array([len(p) for p in prefixes])
        width, dtype = int(lengths.max()), self.compute_dtype
        layers = []
        for layer in range(len(entries[0])):
            keys = torch.nn.utils.rnn.pad_sequence([e[layer][0].transpose(0, 1) for e in entries], batch_first=True)
            values = torch.nn.utils.rnn.pad_sequence([e[layer][1].transpose(0, 1) for e in entries], batch_first=True)
            layers.append(tuple(t.transpose(1, 2).to(device=device, dtype=dtype, memory_format=torch.contiguous_format)
                                for t in (keys, values)))
        mask = (torch.arange(width, device=device) < torch.as_tensor(lengths, device=device).unsqueeze(1)).long()
        return layers, mask

    def _stored_through_user(self, split: SplitBatch, chunk: np.ndarray, lengths: np.ndarray, user_vec, device) -> tuple[list, torch.Tensor]:
        """Prefixes that run through the <UserID> slot (scoring, one per user and history): the
        part before the slot from the store (it depends on the history alone, so every pass and
        every user with that history reuses it), then the slot and the text after it once per
        prefix, against it. Laid out as :meth:`_encode_prefixes` returns them, with the stored
        part's padding inside: positions continue from each prefix's true length."""
        rows = split.first_row[chunk]
        cuts = split.user_pos[rows]
        kv, head_mask = self._stored_prefixes([split.prefixes[g][:c] for g, c in zip(chunk, cuts)], device)
        tails = [split.prefixes[g][c:] for g, c in zip(chunk, cuts)]
        ids, tail_mask = pad_ids(tails, self.placeholder_id, left=False)
        width = ids.shape[1]
        embeds = self.embedding(ids.to(device))
        if user_vec is not None:
            embeds = splice(embeds, torch.zeros(len(tails), dtype=torch.long, device=device),
                            user_vec[torch.as_tensor(rows, device=device)].to(embeds.dtype))
        positions = torch.as_tensor(cuts, device=device).unsqueeze(1) + torch.arange(width, device=device)
        mask = torch.cat([head_mask, tail_mask.to(device)], dim=1)
        cache = kv_cache(kv)  # fresh tensors (built above): the store's own are never extended
        out = self.decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                           **cache_kwargs(self.decoder, cache))
        assert np.array_equal(cuts + np.array([len(t) for t in tails]), lengths)
        return [(layer.keys, layer.values) for layer in output_cache(out).layers], mask

    def encode_embeds(self, embeds: torch.Tensor, mask: torch.Tensor) -> list:
        """Keys/values of right-padded prefix embeddings (soft tokens already in place), laid out
        as :meth:`suffix_states` reads them; autograd as the caller has it."""
        positions = torch.arange(embeds.shape[1], device=embeds.device).expand(len(embeds), -1)
        out = self.decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True)
        return [(layer.keys, layer.values) for layer in output_cache(out).layers]

    def suffix_states(
        self, kv: list, prefix_mask: torch.Tensor, group: np.ndarray, suffixes: list[list[int]]
    ) -> list[torch.Tensor]:
        """Hidden states at every token of each row's suffix (``len(suffix) × hidden``), the suffix
        run against prefix ``group[row]`` of ``kv`` (from :meth:`encode_embeds`): all candidates of a
        query read its prompt once, their suffixes packed ``llm_batch_size`` rows per forward."""
        group = np.asarray(group, dtype=np.int64)
        prefix_len = prefix_mask.sum(1).cpu().numpy()
        none = np.full(len(suffixes), -1, dtype=np.int64)
        split = SplitBatch([()] * len(prefix_len), group, suffixes, none, none, np.zeros(len(prefix_len), dtype=np.int64))
        local = {g: g for g in range(len(prefix_len))}
        rows = sorted(range(len(suffixes)), key=lambda r: (group[r], r))
        states: list = [None] * len(suffixes)
        for s in range(0, len(rows), self.llm_batch_size):
            part = rows[s : s + self.llm_batch_size]
            for r, state in zip(part, self._run_packed(split, part, local, kv, prefix_mask, prefix_len, None, None, spans=True)):
                states[r] = state
        return states

    def _run_packed(self, split, part, local, kv, prefix_mask, prefix_len, user_vec, item_vec, spans: bool = False):
        """The suffixes of ``part`` rows, those of one prefix packed end to end into one sequence
        (no padding between them): each suffix token sees its prefix and the earlier tokens of
        its own suffix only (a 4D mask), at positions continuing from its prefix. Returns each
        row's last hidden state, or (``spans``) the list of its suffix's hidden states."""
        device = prefix_mask.device
        packs: list[tuple[int, list[int]]] = []
        filled = 0  # tokens in the last pack
        for r in part:
            g = local[int(split.group[r])]
            size = len(split.suffixes[r])
            if packs and packs[-1][0] == g and filled + size <= PACK_TOKENS:
                packs[-1][1].append(r)
                filled += size
            else:
                packs.append((g, [r]))
                filled = size
        width = max(sum(len(split.suffixes[r]) for r in rows) for _, rows in packs)
        n_packs = len(packs)
        ids = torch.full((n_packs, width), self.placeholder_id, dtype=torch.long)
        positions = torch.zeros((n_packs, width), dtype=torch.long)
        segment = torch.full((n_packs, width), -1, dtype=torch.long)
        last, slot_index, slot_rows, starts = [], [], [], []
        for b, (g, rows) in enumerate(packs):
            offset = 0
            for r in rows:
                suffix, cut = split.suffixes[r], int(prefix_len[g])
                end = offset + len(suffix)
                ids[b, offset:end] = torch.tensor(suffix, dtype=torch.long)
                positions[b, offset:end] = torch.arange(cut, cut + len(suffix))
                segment[b, offset:end] = r
                for kind, pos in ((0, split.user_pos[r]), (1, split.item_pos[r])):
                    if pos >= cut:  # the slot is in this suffix
                        slot_index.append((kind, b, offset + pos - cut))
                        slot_rows.append(r)
                last.append((b, end - 1))
                starts.append((b, offset, end))
                offset = end
        ids, positions, segment = ids.to(device), positions.to(device), segment.to(device)
        embeds = self.embedding(ids)
        for kind, vectors in ((0, user_vec), (1, item_vec)):
            chosen = [k for k, (which, _, _) in enumerate(slot_index) if which == kind]
            if vectors is None or not chosen:
                continue
            b_idx = torch.tensor([slot_index[k][1] for k in chosen], device=device)
            t_idx = torch.tensor([slot_index[k][2] for k in chosen], device=device)
            values = vectors[torch.tensor([slot_rows[k] for k in chosen], device=device)].to(embeds.dtype)
            embeds = embeds.index_put((b_idx, t_idx), values)
        slots = torch.tensor([g for g, _ in packs], device=device)
        own = (segment.unsqueeze(2) == segment.unsqueeze(1)) & (segment.unsqueeze(2) >= 0)
        own &= torch.ones(width, width, dtype=torch.bool, device=device).tril()
        allowed = torch.cat([prefix_mask[slots].bool().unsqueeze(1).expand(-1, width, -1), own], dim=2)
        mask = torch.zeros(allowed.shape, dtype=embeds.dtype, device=device)
        mask = mask.masked_fill(~allowed, torch.finfo(embeds.dtype).min).unsqueeze(1)
        # each prefix once, in order: the prefix cache as it is, no copy
        in_order = n_packs == len(kv[0][0]) and bool((slots == torch.arange(n_packs, device=device)).all())
        cache = kv_cache(kv if in_order else [(keys[slots], values[slots]) for keys, values in kv])
        out = self.decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                           **cache_kwargs(self.decoder, cache))
        if spans:
            return [out.last_hidden_state[b, start:end] for b, start, end in starts]
        b_idx = torch.tensor([b for b, _ in last], device=device)
        t_idx = torch.tensor([t for _, t in last], device=device)
        return out.last_hidden_state[b_idx, t_idx]


def kv_cache(layers: list[tuple[torch.Tensor, torch.Tensor]]):
    """A transformers ``DynamicCache`` holding ``layers``' keys/values as they are (no copy). The
    cache object grows with the forward run against it (build one per forward); the tensors handed
    in are replaced by concatenations, not written to."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache()
    for keys, values in layers:
        layer = DynamicLayer()
        layer.lazy_initialization(keys, values)
        layer.keys, layer.values = keys, values
        cache.layers.append(layer)
    return cache
