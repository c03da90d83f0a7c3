"""Each sample's history: the user's positive items strictly earlier in time, most recent last.

One rule, one owner: :class:`PositiveHistory` answers for the dataset's own rows (every split, when
the dataset is built) and for pairs scored later from a checkpoint (``recbole-collm score``), on
the exact timestamps read from the files. RecBole keeps float fields as float32 tensors, which
round epoch seconds by up to 64 s; a rule applied to those copies would put rated-later items into
a history. Rows at the same exact time as the query are not history: a file's row order carries no
meaning, and a pair scored with a row's own timestamp must get that row's history.
"""
from __future__ import annotations

import numpy as np


class PositiveHistory:
    """The positive rows of a dataset, sorted by user and exact time (float64)."""

    def __init__(self, users: np.ndarray, items: np.ndarray, times: np.ndarray, labels: np.ndarray):
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        times, positive = np.asarray(times, dtype=np.float64), np.asarray(labels) > 0.5
        if np.isnan(times).any():
            raise ValueError("timestamps must be numbers, found NaN")
        order = np.lexsort((np.arange(positive.sum()), times[positive], users[positive]))
        self.users, self.items, self.times = users[positive][order], items[positive][order], times[positive][order]

    def __call__(self, users: np.ndarray, times: np.ndarray | None, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """For every query ``(user, time)``, the user's positive items with a time strictly before
        ``time`` (``times`` None: all of them), the most recent ``max_len``.

        Returns ``(history, length)``: ``history`` is ``(n, max_len)`` int64, oldest first and
        right-padded with 0 (RecBole's padding id); ``length`` is how many entries are real.
        Vectorized: the times are ranked once and every query is one binary search on
        ``(user, time rank)`` keys.
        """
        if max_len <= 0:
            raise ValueError(f"history length must be positive, got {max_len}")
        users = np.asarray(users, dtype=np.int64)
        n = len(users)
        history = np.zeros((n, max_len), dtype=np.int64)
        length = np.zeros(n, dtype=np.int64)
        if n == 0 or len(self.users) == 0:
            return history, length
        query_times = np.full(n, np.inf) if times is None else np.asarray(times, dtype=np.float64)
        ranks = np.unique(np.concatenate([self.times, query_times]), return_inverse=True)[1].reshape(-1)
        width = int(ranks.max()) + 1
        keys = self.users * width + ranks[: len(self.users)]
        start = np.searchsorted(keys, users * width, side="left")
        end = np.searchsorted(keys, users * width + ranks[len(self.users):], side="left")
        length[:] = np.minimum(end - start, max_len)
        offsets = np.arange(max_len)
        index = (end - length)[:, None] + offsets
        valid = offsets < length[:, None]
        history[:] = np.where(valid, self.items[np.clip(index, 0, len(self.items) - 1)], 0)
        return history, length


def last_positive_history(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    labels: np.ndarray,
    max_len: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Every row's history among the rows themselves (the rows of every split, passed together so
    earlier valid/test rows count for later rows): :class:`PositiveHistory` asked at each row's
    own user and time."""
    return PositiveHistory(users, items, times, labels)(users, times, max_len)
