"""Prompt construction by token segments, with the positions of the two ID slots recorded.

Slots are never found by searching for a token afterwards (SmolLM2's unk token is its
``<|endoftext|>``): each prompt is assembled from pre-tokenized pieces, so the slot positions
are known exactly. Titles are tokenized once per dataset; a batch only concatenates ids.
"""
from __future__ import annotations

import functools
import re
from typing import Callable

import numpy as np
import torch

from recbole_collm.errors import InputError

HISTORY, USER, TARGET, ITEM = "<HisItemTitleList>", "<UserID>", "<TargetItemTitle>", "<TargetItemID>"
SLOT_PATTERN = re.compile(r"(<HisItemTitleList>|<UserID>|<TargetItemTitle>|<TargetItemID>)")


def text_ids(tokenizer) -> Callable[[str], list[int]]:
    """A prompt piece's token ids, with no special token: pieces are joined by the models, which put
    the BOS first themselves where the LLM has one (:func:`leading_special_ids`)."""
    return functools.partial(tokenizer.encode, add_special_tokens=False)


def pad_id(tokenizer) -> int:
    """The id in padded positions: the pad token (``load_llm`` sets it to EOS where the tokenizer
    has none), else 0. Masks come from lengths, never from ids, so any id serves."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def pad_ids(seqs: list[list[int]], pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists as one ``(ids, attention_mask)`` pair, padded with ``pad`` on the left (the
    last position is each row's last token: scoring) or on the right (prefixes that are extended,
    mean pooling)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, seq in enumerate(seqs):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[b, span] = torch.tensor(seq, dtype=torch.long)
        mask[b, span] = 1
    return ids, mask


def answer_token_ids(tokenizer, cue: str) -> tuple[int, int]:
    """The ids of " Yes" / " No" as they follow ``cue`` in this tokenizer (never hard-coded)."""
    encode = text_ids(tokenizer)
    base = encode(cue)
    ids = []
    for word in ("Yes", "No"):
        full = encode(f"{cue} {word}")
        if full[: len(base)] != base or len(full) <= len(base):
            raise InputError(f"prompt_template: cannot derive the '{word}' token after '{cue[-20:]}'")
        ids.append(full[len(base)])
    if ids[0] == ids[1]:
        raise InputError("tokenizer: 'Yes' and 'No' map to the same token")
    return ids[0], ids[1]


def leading_special_ids(tokenizer) -> list[int]:
    """The BOS id when the tokenizer puts one before every text of its own accord (LLaMA/Vicuna,
    Gemma: their models were trained so, and the official CoLLM prompt starts with ``<s>``), else
    nothing (SmolLM2 defines a BOS token but never adds it)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    with_special = tokenizer.encode("a", add_special_tokens=True)
    plain = text_ids(tokenizer)("a")
    return [bos] if with_special[:1] == [bos] and plain[:1] != [bos] else []


class PromptBuilder:
    """Builds left-padded token batches for (history, target) rows from a template.

    ``with_ids=False`` is the text-only (TALLRec) variant: the template must then have no ID slots.
    """

    def __init__(
        self,
        tokenizer,
        template: str,
        item_titles,
        domain: str = "movie",
        with_ids: bool = True,
        max_tokens: int | None = None,
        history_length: int | None = None,
    ):
        template = template.replace("{item}", domain)
        required = [HISTORY, TARGET] + ([USER, ITEM] if with_ids else [])
        for slot in required:
            if template.count(slot) != 1:
                raise InputError(f"prompt_template: needs exactly one {slot} slot, found {template.count(slot)}")
        if not with_ids and (USER in template or ITEM in template):
            raise InputError("text_prompt_template: must not contain <UserID>/<TargetItemID>")
        if item_titles is None:
            raise InputError("title_field: the dataset has no item titles; load the title column in load_col")
        self.tokenizer = tokenizer
        self.with_ids = with_ids
        self.max_tokens = max_tokens
        self.history_length = history_length  # the most recent N history titles (None: all given)
        self.placeholder_id = pad_id(tokenizer)
        pieces = [p for p in SLOT_PATTERN.split(template) if p]
        encode = text_ids(tokenizer)
        # a space before a slot belongs to the slot's first token (as joint tokenization would do)
        self.pieces = [leading_special_ids(tokenizer)]  # BOS once, before everything, where the model expects it
        for i, piece in enumerate(pieces):
            if piece in (HISTORY, USER, TARGET, ITEM):
                self.pieces.append(piece)
            else:
                nxt = pieces[i + 1] if i + 1 < len(pieces) else None
                text = piece.rstrip(" ") if nxt is not None else piece
                self.pieces.append(encode(text))
        self.history_title_ids = [encode(f' "{t}"') for t in item_titles]
        self.target_title_ids = [encode(f" {t}") for t in item_titles]
        self.comma_ids = encode(",")
        if pieces[-1] in (HISTORY, USER, TARGET, ITEM) or not pieces[-1].strip():
            raise InputError("prompt_template: must end with the answer cue (e.g. '#Answer:'), not a slot")
        self.yes_id, self.no_id = answer_token_ids(tokenizer, pieces[-1])

    def fit_history(self, history: np.ndarray, target: int) -> np.ndarray:
        """The most recent ``history_length`` history items whose titles fit in ``max_tokens``
        (oldest dropped first); the ID slots, target title and answer cue are never cut."""
        if self.history_length is not None:
            history = history[max(0, len(history) - self.history_length) :]
        if not self.max_tokens:
            return history
        fixed = sum(len(p) for p in self.pieces if not isinstance(p, str))
        fixed += len(self.target_title_ids[target]) + (2 if self.with_ids else 0)
        if fixed > self.max_tokens:
            raise InputError(
                f"max_prompt_tokens: {self.max_tokens} is too small for item {target}'s prompt without "
                f"history ({fixed} tokens); raise it"
            )
        budget, keep = self.max_tokens - fixed, 0
        for k, item in enumerate(reversed(history)):
            cost = len(self.history_title_ids[item]) + (len(self.comma_ids) if k else 0)
            if cost > budget:
                break
            budget -= cost
            keep += 1
        return history[len(history) - keep :]

    def row(self, history: np.ndarray, target: int) -> tuple[list[int], int, int]:
        """Token ids of one prompt and the positions of the user and item slots (-1 if none)."""
        ids, starts = self._assemble(history, target)
        return ids, starts.get(USER, -1), starts.get(ITEM, -1)

    def split_row(self, history: np.ndarray, target: int, through_user: bool = False) -> tuple[tuple[int, ...], list[int], int, int]:
        """One prompt cut in two: ``(prefix, suffix, user_pos, item_pos)``, slot positions in the
        whole prompt (-1 if none); ``prefix + suffix`` equals :meth:`row`'s ids.

        The prefix is every piece before the first <UserID>/<TargetItemTitle>/<TargetItemID>: a
        function of the (fitted) history alone. ``through_user=True`` cuts before the first
        target slot instead, so the prefix holds the <UserID> slot (a function of history and
        user: share it only between rows of the same user)."""
        ids, starts = self._assemble(history, target)
        stops = (TARGET, ITEM) if through_user else (USER, TARGET, ITEM)
        cut = min(starts[slot] for slot in stops if slot in starts)
        return tuple(ids[:cut]), ids[cut:], starts.get(USER, -1), starts.get(ITEM, -1)

    def _assemble(self, history: np.ndarray, target: int) -> tuple[list[int], dict[str, int]]:
        """Token ids of one prompt and where each non-history slot starts in them."""
        history = self.fit_history(history, target)
        ids: list[int] = []
        starts: dict[str, int] = {}
        for piece in self.pieces:
            if piece == HISTORY:
                for k, item in enumerate(history):
                    if k:
                        ids += self.comma_ids
                    ids += self.history_title_ids[item]
            elif piece == TARGET:
                starts[TARGET] = len(ids)
                ids += self.target_title_ids[target]
            elif piece in (USER, ITEM):
                starts[piece] = len(ids)
                ids.append(self.placeholder_id)
            else:
                ids += piece
        return ids, starts

    def batch(self, history: torch.Tensor, length: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Left-padded ``input_ids``, ``attention_mask``, ``position_ids`` and the slot positions
        in padded coordinates. Masks come from lengths, never from ``ids != pad_id``."""
        history, length, target = history.cpu().numpy(), length.cpu().numpy(), target.cpu().numpy()
        rows = [self.row(h[:n], t) for h, n, t in zip(history, length, target)]
        input_ids, attention_mask = pad_ids([r[0] for r in rows], self.placeholder_id, left=True)
        width, batch = input_ids.shape[1], len(rows)
        user_pos = torch.full((batch,), -1, dtype=torch.long)
        item_pos = torch.full((batch,), -1, dtype=torch.long)
        for b, (ids, upos, ipos) in enumerate(rows):
            pad = width - len(ids)
            if upos >= 0:
                user_pos[b], item_pos[b] = upos + pad, ipos + pad
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "user_pos": user_pos,
            "item_pos": item_pos,
        }
