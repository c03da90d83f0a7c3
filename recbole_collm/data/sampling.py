"""The plugin's item sampling, one definition each: the popular-items catalogue (capped full-sort
ranking, ``recommend --candidates popN``), each user's item set (what samplers and masks exclude),
the one rejection sampler of unseen items (evaluation candidates, A-LLMRec's training negatives),
and the seeded candidate sets of ranking evaluation."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from recbole_collm.errors import InputError


def popular_items(train_item_count: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` items (id ≥ 1) with the most train interactions, ties by id, in id order: the one
    definition behind the capped full-sort catalogue and ``recommend --candidates popN``."""
    count = np.asarray(train_item_count, dtype=np.float64)
    return np.sort(np.argsort(-count[1:], kind="stable")[: int(n)] + 1)


def capped_items(config, train_item_count: np.ndarray) -> torch.Tensor:
    """The full-sort catalogue: every item (id ≥ 1), or the ``full_sort_items`` most popular in
    train (:func:`popular_items`). Models and loaders share this one definition."""
    items = np.arange(1, len(train_item_count))
    cap = config["full_sort_items"]
    if cap and cap < len(items):
        items = popular_items(train_item_count, cap)
    return torch.from_numpy(items)


def user_item_sets(users, items, user_num: int) -> list[set]:
    """Each user's set of items among ``(users, items)`` rows: what samplers and masks exclude."""
    sets: list[set] = [set() for _ in range(user_num)]
    for user, item in zip(np.asarray(users).tolist(), np.asarray(items).tolist()):
        sets[user].add(item)
    return sets


def unseen_items(draw: Callable[[int], list[int]], taken: set, num: int, item_num: int, what: str) -> list[int]:
    """``num`` distinct item ids (≥ 1) outside ``taken`` (which grows by them), from ``draw(k)``,
    which returns ``k`` random ids. The one rejection sampler of the plugin: evaluation candidates
    (numpy's seeded generator) and training negatives (torch's, so a resumed run draws the same)
    differ only in ``draw``. Too few items left is one error naming ``what``, never an endless loop."""
    if item_num - 1 - len(taken - {0}) < num:
        raise InputError(f"{what}: fewer than {num} items are left to sample as negatives")
    chosen: list[int] = []
    while len(chosen) < num:
        for item in draw(2 * (num - len(chosen))):
            if item and item not in taken:
                taken.add(item)
                chosen.append(item)
                if len(chosen) == num:
                    break
    return chosen


def sample_candidates(
    users: np.ndarray, targets: np.ndarray, interacted: list[set], item_num: int, num: int, weights: np.ndarray | None, seed: int
) -> np.ndarray:
    """``(queries, 1 + num)``: each target and ``num`` distinct items the user never touched, in a
    seeded random order per query. The order is the one a model that lists the candidates in its
    prompt (A-LLMRec) sees: it must carry nothing about which one is the target. Item-id order
    would: RecBole numbers items by first appearance, so ids follow popularity, and the target is
    a popular item more often than a uniform negative is."""
    rng = np.random.default_rng(seed)
    if weights is not None:
        weights = weights.copy()
        weights[0] = 0
        p = weights / weights.sum()
        draw = lambda k: rng.choice(item_num, size=k, p=p).tolist()  # noqa: E731
    else:
        draw = lambda k: rng.integers(1, item_num, size=k).tolist()  # noqa: E731
    out = np.empty((len(targets), 1 + num), dtype=np.int64)
    for q, (user, target) in enumerate(zip(users, targets)):
        chosen = unseen_items(draw, interacted[user] | {int(target)}, num, item_num, f"eval_args.mode: user {user}")
        out[q] = rng.permutation([int(target), *chosen])
    return out
