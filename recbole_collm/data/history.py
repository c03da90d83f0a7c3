"""Each sample's history: the user's earlier positive items, most recent last."""
from __future__ import annotations

import numpy as np


def last_positive_history(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    labels: np.ndarray,
    max_len: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For every row, the items of the same user's earlier positive rows (time order, ties
    broken by row order), the most recent ``max_len`` of them.

    Returns ``(history, length)``: ``history`` is ``(n, max_len)`` int64, oldest first and
    right-padded with 0 (RecBole's padding id); ``length`` is how many entries are real. Rows of
    every split are passed together so earlier valid/test rows count for later rows. Vectorized:
    one sort and a few cumulative sums, no per-user Python loop.
    """
    n = len(users)
    if max_len <= 0:
        raise ValueError(f"history length must be positive, got {max_len}")
    history = np.zeros((n, max_len), dtype=np.int64)
    length = np.zeros(n, dtype=np.int64)
    if n == 0:
        return history, length
    order = np.lexsort((np.arange(n), np.asarray(times), np.asarray(users)))
    sorted_users = np.asarray(users)[order]
    sorted_items = np.asarray(items, dtype=np.int64)[order]
    positive = np.asarray(labels)[order] > 0.5

    before = np.cumsum(positive) - positive  # positives (any user) strictly before each row
    first_of_user = np.r_[True, sorted_users[1:] != sorted_users[:-1]]
    user_start = before[first_of_user][np.cumsum(first_of_user) - 1]
    sorted_length = np.minimum(before - user_start, max_len)

    positive_items = sorted_items[positive]
    if len(positive_items):
        offsets = np.arange(max_len)
        index = (before - sorted_length)[:, None] + offsets
        valid = offsets < sorted_length[:, None]
        gathered = positive_items[np.clip(index, 0, len(positive_items) - 1)]
        history[order] = np.where(valid, gathered, 0)
    length[order] = sorted_length
    return history, length
