"""CoLLM's user-level metrics on labeled rows, registered into RecBole's evaluator.

RecBole's own ``AUC`` and ``LogLoss`` are used as they are. ``NDCG``/``GAUC`` are RecBole's
ranking metrics (full-sort/candidate evaluation), so the labeled-row versions here are named
``UNDCG`` and ``WGAUC`` to keep both usable.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from recbole.evaluator import register as recbole_register
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType
from sklearn.metrics import ndcg_score


def group_by_user(uid: np.ndarray) -> list[np.ndarray]:
    """Row indices of each user, users in ascending id order."""
    order = np.argsort(uid, kind="stable")
    _, starts = np.unique(uid[order], return_index=True)
    return np.split(order, starts[1:])


def per_user_auc(uid: np.ndarray, scores: np.ndarray, labels: np.ndarray):
    """ROC-AUC of each user having more than one row and both classes; other users are skipped.

    Vectorized with the rank-sum (Mann-Whitney) form and average ranks for ties, which equals
    sklearn's ``roc_auc_score`` per user (the tests check it). Returns ``(aucs, positives)``.
    """
    frame = pd.DataFrame({"uid": uid, "score": scores, "pos": labels > 0.5})
    frame["rank"] = frame.groupby("uid")["score"].rank(method="average")
    grouped = frame.groupby("uid")
    n_rows = grouped.size()
    n_pos = grouped["pos"].sum()
    rank_sum = frame["rank"].where(frame["pos"], 0.0).groupby(frame["uid"]).sum()
    keep = (n_rows > 1) & (n_pos > 0) & (n_pos < n_rows)
    n_pos, n_neg, rank_sum = n_pos[keep], (n_rows - n_pos)[keep], rank_sum[keep]
    aucs = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return aucs.to_numpy(dtype=float), n_pos.to_numpy(dtype=float)


def uauc(uid: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> float:
    """The paper's UAUC: unweighted mean of per-user AUC (NaN when no user qualifies)."""
    aucs, _ = per_user_auc(uid, scores, labels)
    return float(aucs.mean()) if len(aucs) else float("nan")


def wgauc(uid: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> float:
    """Per-user AUC weighted by the user's positive count, RecBole's GAUC weighting."""
    aucs, positives = per_user_auc(uid, scores, labels)
    return float((aucs * positives).sum() / positives.sum()) if len(aucs) else float("nan")


def user_ndcg(uid: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over users of NDCG of the user's labeled rows ranked by score (relevance = label).

    Users with one row or no positive row are skipped (NDCG is undefined or trivially 1).
    Ties in score are averaged over their orderings, as sklearn does.
    """
    values = []
    for rows in group_by_user(uid):
        y = labels[rows]
        if len(rows) < 2 or not (y > 0.5).any():
            continue
        values.append(ndcg_score(y[None, :], scores[rows][None, :]))
    return float(np.mean(values)) if values else float("nan")


class _UserMetric(AbstractMetric):
    metric_type = EvaluatorType.VALUE
    metric_need = ["rec.score", "data.label", "data.uid"]
    smaller = False
    function = None

    def calculate_metric(self, dataobject):
        scores = dataobject.get("rec.score").squeeze(-1).numpy()
        labels = dataobject.get("data.label").squeeze(-1).numpy()
        uid = dataobject.get("data.uid").squeeze(-1).numpy()
        value = type(self).function(uid, scores, labels)
        return {type(self).__name__.lower(): round(value, self.decimal_place)}


class UAUC(_UserMetric):
    """Per-user AUC, unweighted mean over users with both classes (CoLLM paper)."""

    function = staticmethod(uauc)


class WGAUC(_UserMetric):
    """Per-user AUC weighted by positives (RecBole's GAUC weighting) on labeled rows."""

    function = staticmethod(wgauc)


class UNDCG(_UserMetric):
    """Per-user NDCG over the user's labeled rows, mean over users."""

    function = staticmethod(user_ndcg)


PLUGIN_METRICS = (UAUC, WGAUC, UNDCG)


def register_metrics() -> None:
    """Add the plugin's metrics to RecBole's registries, so ``metrics:`` and ``valid_metric:``
    accept them. RecBole builds these dicts once from its own module and reads them by name."""
    for cls in PLUGIN_METRICS:
        name = cls.__name__.lower()
        recbole_register.metrics_dict[name] = cls
        recbole_register.metric_information[name] = cls.metric_need
        recbole_register.metric_types[name] = cls.metric_type
        if cls.smaller and name not in recbole_register.smaller_metrics:
            recbole_register.smaller_metrics.append(name)
