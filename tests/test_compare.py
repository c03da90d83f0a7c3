"""Paired bootstrap over users: the interval of a difference between two models on the same rows."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from recbole_collm.evaluator.compare import compare_rows, paired_bootstrap, paired_bootstrap_mean
from recbole_collm.evaluator.metrics import per_user_auc


def data(seed=0, users=30, rows=400):
    rng = np.random.default_rng(seed)
    uid = rng.integers(0, users, rows)
    labels = rng.integers(0, 2, rows)
    return uid, labels, rng.normal(size=rows) + labels, rng.normal(size=rows) + 0.3 * labels


def reference_auc_interval(uid, labels, a, b, resamples, seed):
    """The definition, the slow way: draw users with replacement, copy each drawn user's rows."""
    users = np.unique(uid)
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(resamples):
        drawn = users[rng.integers(0, len(users), len(users))]
        rows = np.concatenate([np.flatnonzero(uid == u) for u in drawn])
        differences.append(roc_auc_score(labels[rows], a[rows]) - roc_auc_score(labels[rows], b[rows]))
    return np.percentile(differences, [2.5, 97.5])


def test_auc_interval_is_the_user_resampling_definition():
    uid, labels, a, b = data()
    got = paired_bootstrap(uid, labels, a, b, "auc", resamples=40, seed=3)
    low, high = reference_auc_interval(uid, labels, a, b, 40, 3)
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)
    assert got.a == roc_auc_score(labels, a) and got.b == roc_auc_score(labels, b)
    assert got.users == 30 and got.rows == 400 and got.significant  # a is far better


def test_uauc_interval_resamples_the_per_user_aucs():
    uid, labels, a, b = data(1)
    got = paired_bootstrap(uid, labels, a, b, "uauc", resamples=60, seed=5)
    per_a, _ = per_user_auc(uid, a, labels)
    per_b, _ = per_user_auc(uid, b, labels)
    draws = np.random.default_rng(5).integers(0, len(per_a), (60, len(per_a)))
    low, high = np.percentile((per_a - per_b)[draws].mean(axis=1), [2.5, 97.5])
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)
    assert got.a == pytest.approx(per_a.mean()) and got.users == len(per_a)


def test_the_same_scores_are_not_significant_and_the_text_says_so():
    uid, labels, a, _ = data(2)
    got = paired_bootstrap(uid, labels, a, a.copy(), "auc", resamples=20)
    assert (got.low, got.high, got.difference) == (0.0, 0.0, 0.0) and not got.significant
    assert str(got).endswith("[+0.0000, +0.0000] (not significant; paired bootstrap over 30 users, 400 rows)")


def test_a_comparison_without_a_value_is_undefined_not_a_miss():
    """UAUC on users who each hold one class has no value: the verdict says so (a NaN interval
    would otherwise read as significant, and a NaN difference as a miss)."""
    uid = np.repeat(np.arange(10), 2)
    labels = np.tile([1, 1, 0, 0], 5)  # every user holds one class
    got = paired_bootstrap(uid, labels, np.linspace(0, 1, 20), np.linspace(1, 0, 20), "uauc", resamples=20)
    assert np.isnan(got.a) and not got.defined and not got.significant and got.verdict == "undefined"
    uid, labels, a, b = data(2)
    assert paired_bootstrap(uid, labels, a, b, "auc", resamples=20).verdict == "met"  # a: 1.0 x the label, b: 0.3 x
    assert paired_bootstrap(uid, labels, b, a, "auc", resamples=20).verdict == "missed"


def test_compare_rows_refuses_rows_that_differ():
    uid, labels, a, b = data(3)
    rows = {"uid": uid, "iid": np.arange(len(uid)), "label": labels, "score": a}
    other = {**rows, "iid": np.arange(len(uid))[::-1], "score": b}
    with pytest.raises(ValueError, match="scored different rows"):
        compare_rows(rows, other)
    auc, uauc = compare_rows(rows, {**rows, "score": b}, resamples=10)
    assert (auc.metric, uauc.metric) == ("auc", "uauc")


def test_a_per_query_mean_interval_is_the_user_resampling_definition():
    rng = np.random.default_rng(4)
    uid = rng.integers(0, 25, 300)
    a, b = (rng.random(300) < 0.4).astype(float), (rng.random(300) < 0.2).astype(float)
    got = paired_bootstrap_mean(uid, a, b, "hit@1", resamples=50, seed=7)
    users = np.unique(uid)
    draws = np.random.default_rng(7)
    differences = []
    for _ in range(50):  # the slow way: each drawn user's queries copied in
        rows = np.concatenate([np.flatnonzero(uid == u) for u in users[draws.integers(0, len(users), len(users))]])
        differences.append(a[rows].mean() - b[rows].mean())
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(differences, [2.5, 97.5])), abs=1e-12)
    assert (got.a, got.b, got.users, got.rows) == (a.mean(), b.mean(), 25, 300)
    assert got.verdict == "met" and str(got).startswith(f"HIT@1 {a.mean():.4f} vs {b.mean():.4f}")
    assert paired_bootstrap_mean(uid, b, a, "hit@1", resamples=50, seed=7).verdict == "missed"
    assert paired_bootstrap_mean(uid, a, a, "hit@1", resamples=50).verdict == "not significant"
