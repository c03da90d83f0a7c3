"""How sure a comparison of two models on the same rows is: a paired bootstrap over users.

Rows of one user are not independent (one history, one taste), so the resampling unit is the user:
each replicate draws users with replacement, keeps all their rows for both models, and recomputes
the metric of each; the interval is the percentile interval of the replicates' differences. An
interval that holds zero is reported as not significant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from recbole_collm.evaluator.metrics import per_user_auc

METRICS = ("auc", "uauc")


@dataclass(frozen=True)
class Comparison:
    """``metric`` of model a and model b on the same rows, their difference (a − b) and its
    ``level`` percentile interval over ``resamples`` user resamples."""

    metric: str
    a: float
    b: float
    low: float
    high: float
    users: int
    rows: int
    level: float = 0.95
    resamples: int = 1000

    @property
    def difference(self) -> float:
        return self.a - self.b

    @property
    def defined(self) -> bool:
        """Whether both values and the interval exist (a metric on rows of one class has none)."""
        return not any(math.isnan(v) for v in (self.a, self.b, self.low, self.high))

    @property
    def significant(self) -> bool:
        return self.defined and not self.low <= 0.0 <= self.high

    @property
    def verdict(self) -> str:
        """Whether these rows show the claim "a above b": ``met`` (the interval above zero),
        ``missed`` (below zero), ``not significant`` (it holds zero), or ``undefined`` (no value
        or no interval: never counted as a miss)."""
        if not self.defined:
            return "undefined"
        return "not significant" if not self.significant else ("met" if self.difference > 0 else "missed")

    def __str__(self) -> str:
        if not self.defined:
            return (f"{self.metric.upper()} undefined (no comparison: {self.users} users with both labels in "
                    f"{self.rows} rows)")
        verdict = "significant" if self.significant else "not significant"
        return (f"{self.metric.upper()} {self.a:.4f} vs {self.b:.4f}: difference {self.difference:+.4f}, "
                f"{self.level:.0%} interval [{self.low:+.4f}, {self.high:+.4f}] ({verdict}; paired bootstrap over "
                f"{self.users} users, {self.rows} rows)")


def paired_bootstrap(uid: np.ndarray, labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, metric: str = "auc",
                     resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Comparison:
    """Compare two models' ``scores_a`` / ``scores_b`` on the same labeled rows (``metric``: auc,
    or uauc — the mean of per-user AUC over users with both labels)."""
    if metric not in METRICS:
        raise ValueError(f"metric: '{metric}' is not one of {', '.join(METRICS)}")
    uid, labels = np.asarray(uid), np.asarray(labels) > 0.5
    scores_a, scores_b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    users, user_of_row = np.unique(uid, return_inverse=True)
    rng = np.random.default_rng(seed)
    if metric == "auc":
        a, b = roc_auc_score(labels, scores_a), roc_auc_score(labels, scores_b)
        differences = np.empty(resamples)
        for r in range(resamples):
            weight = np.bincount(rng.integers(0, len(users), len(users)), minlength=len(users))[user_of_row]
            if not labels[weight > 0].any() or labels[weight > 0].all():
                differences[r] = np.nan  # a draw holding one class has no AUC
                continue
            differences[r] = (roc_auc_score(labels, scores_a, sample_weight=weight)
                              - roc_auc_score(labels, scores_b, sample_weight=weight))
        counted = len(users)
    else:
        per_a, _ = per_user_auc(uid, scores_a, labels)
        per_b, _ = per_user_auc(uid, scores_b, labels)  # the same users: they depend on the labels only
        if not len(per_a):  # no user with both labels: UAUC is undefined, for either model
            nan = float("nan")
            return Comparison(metric, nan, nan, nan, nan, 0, len(uid), level, resamples)
        a, b = float(per_a.mean()), float(per_b.mean())
        draws = rng.integers(0, len(per_a), (resamples, len(per_a)))
        differences = (per_a - per_b)[draws].mean(axis=1)
        counted = len(per_a)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(differences, [tail, 100 - tail]) if not np.isnan(differences).all() else (np.nan, np.nan)
    return Comparison(metric, float(a), float(b), float(low), float(high), counted, len(uid), level, resamples)


def paired_bootstrap_mean(uid: np.ndarray, values_a: np.ndarray, values_b: np.ndarray, metric: str,
                          resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Comparison:
    """Compare the mean of a per-query value (a ranking query's Hit@K, NDCG@K, Recall@K) of two
    models on the same queries; ``uid`` is each query's user, the resampling unit. A replicate's
    difference is the mean over the drawn users' queries (a user drawn twice counts twice)."""
    uid = np.asarray(uid)
    values_a, values_b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if not len(uid) == len(values_a) == len(values_b):
        raise ValueError(f"paired_bootstrap_mean: {len(uid)} users, {len(values_a)} and {len(values_b)} values")
    users, user_of_row = np.unique(uid, return_inverse=True)
    total = np.bincount(user_of_row, weights=values_a - values_b, minlength=len(users))
    count = np.bincount(user_of_row, minlength=len(users)).astype(np.float64)
    rng = np.random.default_rng(seed)
    weight = np.stack([np.bincount(rng.integers(0, len(users), len(users)), minlength=len(users)) for _ in range(resamples)])
    differences = (weight @ total) / (weight @ count)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return Comparison(metric, float(values_a.mean()), float(values_b.mean()), float(low), float(high), len(users), len(uid),
                      level, resamples)


def compare_rows(rows_a: dict, rows_b: dict, metrics: tuple[str, ...] = METRICS, **kwargs) -> list[Comparison]:
    """Two evaluations' scored rows (``result.rows``: uid, iid, label, score) of the same rows."""
    key_a = list(zip(np.asarray(rows_a["uid"]).tolist(), np.asarray(rows_a["iid"]).tolist()))
    key_b = list(zip(np.asarray(rows_b["uid"]).tolist(), np.asarray(rows_b["iid"]).tolist()))
    if key_a != key_b:
        raise ValueError("compare_rows: the two evaluations scored different rows (or in another order)")
    return [paired_bootstrap(rows_a["uid"], rows_a["label"], rows_a["score"], rows_b["score"], m, **kwargs) for m in metrics]
