"""Prompt batches in the forms the decoder runs: a batch split into its distinct prefixes and one
suffix per row (what the shared-prefix encoder needs), and collaborative vectors spliced into the
ID slots of embedded prompts (both paths)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recbole_collm.model.llm.prompts import PromptBuilder


def group_rows(keys: list) -> tuple[np.ndarray, list[int], list]:
    """Rows with equal keys as one group, in first-seen order: ``(group, first_row, distinct)`` —
    row → group index, each group's first row, each group's key. The one grouping every prompt
    batch uses (CoLLM's prefixes, A-LLMRec's and CLLM4Rec's queries)."""
    index: dict = {}
    group = np.empty(len(keys), dtype=np.int64)
    first_row = []
    for r, key in enumerate(keys):
        if key not in index:
            index[key] = len(index)
            first_row.append(r)
        group[r] = index[key]
    return group, first_row, list(index)


@dataclass
class SplitBatch:
    """A batch of prompts as distinct prefixes plus one suffix per row."""

    prefixes: list[tuple[int, ...]]
    group: np.ndarray  # row -> index into prefixes
    suffixes: list[list[int]]
    user_pos: np.ndarray  # slot positions in each row's whole prompt (-1: none)
    item_pos: np.ndarray
    first_row: np.ndarray  # group -> one of its rows (whose user vector a shared <UserID> slot gets)

    @property
    def rows(self) -> int:
        return len(self.suffixes)


def split_batch(
    prompts: PromptBuilder, history: torch.Tensor, length: torch.Tensor, target: torch.Tensor,
    users: torch.Tensor | None = None,
) -> SplitBatch:
    """Group rows by their exact prefix token ids (so a history cut by ``max_prompt_tokens``
    differently for two targets never shares a prefix it should not). With ``users`` the prefix
    runs through the <UserID> slot and rows are grouped by (user, prefix ids): only for user
    vectors that do not depend on the target."""
    history, length, target = history.cpu().numpy(), length.cpu().numpy(), target.cpu().numpy()
    user_ids = users.cpu().numpy() if users is not None else None
    keys, suffixes, user_pos, item_pos = [], [], np.empty(len(target), np.int64), np.empty(len(target), np.int64)
    for r, (h, n, t) in enumerate(zip(history, length, target)):
        prefix, suffix, upos, ipos = prompts.split_row(h[:n], int(t), through_user=user_ids is not None)
        keys.append((int(user_ids[r]), prefix) if user_ids is not None else prefix)
        suffixes.append(suffix)
        user_pos[r], item_pos[r] = upos, ipos
    group, first_row, distinct = group_rows(keys)
    prefixes = [k[1] if user_ids is not None else k for k in distinct]
    return SplitBatch(prefixes, group, suffixes, user_pos, item_pos, np.array(first_row, dtype=np.int64))


def splice(embeds: torch.Tensor, positions: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``embeds`` with ``vectors[b]`` at ``[b, positions[b]]``, differentiable w.r.t. vectors."""
    index = positions.view(-1, 1, 1).expand(-1, 1, embeds.shape[-1])
    return embeds.scatter(1, index, vectors.unsqueeze(1))
