"""A ranking evaluation recomputed by hand from a model's own scores: what the ranking tests check
RecBole's evaluator against (one copy for every test that needs it)."""
from __future__ import annotations

import numpy as np
import torch

from recbole_collm.data.dataloader import CandidateEvalDataLoader


def target_ranks(model, loader) -> np.ndarray:
    """Each query's target's 0-based place among the items it competes with: how many of them
    score strictly higher. Candidate sets: the query's listed candidates; full sort: every item
    but the ones the loader masks (the user's own, at -inf as RecBole's trainer sets them) and
    the padding item 0."""
    ranks = []
    model.eval()
    with torch.no_grad():
        for rows, index, _, targets in loader:
            if isinstance(loader, CandidateEvalDataLoader):
                queries = len(targets)
                scores = model.predict(rows).view(queries, -1)
                items = rows[loader._dataset.iid_field].view(queries, -1)
                target = scores[items == targets[:, None]]
            else:
                scores = model.full_sort_predict(rows).view(len(rows), -1)
                masked_row, masked_item = index
                scores[masked_row, masked_item] = -torch.inf
                scores[:, 0] = -torch.inf
                target = scores[torch.arange(len(rows)), targets]
            ranks += (scores > target[:, None]).sum(1).tolist()
    return np.array(ranks)


def hit(ranks: np.ndarray, k: int) -> float:
    return float((ranks < k).mean())


def mrr(ranks: np.ndarray, k: int) -> float:
    return float(np.where(ranks < k, 1 / (ranks + 1), 0).mean())


def ndcg(ranks: np.ndarray, k: int) -> float:
    """One relevant item per query: its gain at its place, over an ideal DCG of 1."""
    return float(np.where(ranks < k, 1 / np.log2(ranks + 2), 0).mean())
