"""UAUC / WGAUC / UNDCG against sklearn, and warm/cold membership."""
import numpy as np
import pytest
import torch
from recbole.evaluator.collector import DataStruct
from sklearn.metrics import ndcg_score, roc_auc_score

from recbole_collm.evaluator import CollmEvaluator, warm_cold_masks
from recbole_collm.evaluator.metrics import uauc, user_ndcg, wgauc
from tests.conftest import tiny_config


def random_rows(seed, n=400, users=30):
    rng = np.random.default_rng(seed)
    uid = rng.integers(1, users, size=n)
    scores = np.round(rng.random(n), 1)  # coarse scores: many ties
    labels = (rng.random(n) < 0.5).astype(float)
    uid = np.r_[uid, 99, 100, 100]  # a one-row user and a single-class user
    return uid, np.r_[scores, 0.3, 0.2, 0.9], np.r_[labels, 1.0, 1.0, 1.0]


def sklearn_per_user(uid, scores, labels):
    aucs, weights, ndcgs = [], [], []
    for u in np.unique(uid):
        m = uid == u
        y, s = labels[m], scores[m]
        if m.sum() > 1 and 0 < y.sum() < m.sum():
            aucs.append(roc_auc_score(y, s))
            weights.append(y.sum())
        if m.sum() > 1 and y.sum() > 0:
            ndcgs.append(ndcg_score([y], [s]))
    return np.array(aucs), np.array(weights), np.array(ndcgs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_user_metrics_match_sklearn(seed):
    uid, scores, labels = random_rows(seed)
    aucs, weights, ndcgs = sklearn_per_user(uid, scores, labels)
    assert uauc(uid, scores, labels) == pytest.approx(aucs.mean())
    assert wgauc(uid, scores, labels) == pytest.approx((aucs * weights).sum() / weights.sum())
    assert user_ndcg(uid, scores, labels) == pytest.approx(ndcgs.mean())
    # single-class and one-row users are skipped, not counted as 0.5 or 1
    assert len(aucs) < len(np.unique(uid))


def test_no_qualifying_user_is_nan_not_crash():
    assert np.isnan(uauc(np.array([1, 2]), np.array([0.1, 0.2]), np.array([1.0, 0.0])))


def test_warm_cold_membership():
    user_count = np.array([0, 5, 4, 3, 0])
    item_count = np.array([0, 9, 1, 4])
    uid = np.array([1, 1, 2, 3, 4, 1])
    iid = np.array([1, 2, 3, 1, 1, 0])
    masks = warm_cold_masks(uid, iid, user_count, item_count, warm_threshold=3)
    np.testing.assert_array_equal(masks["warm"], [True, False, True, False, False, False])
    np.testing.assert_array_equal(masks["cold"], [False, False, False, False, True, True])


def test_evaluator_reports_subsets_through_recbole_registry():
    config = tiny_config(metrics=["AUC", "UAUC", "UNDCG", "WGAUC", "LogLoss"])
    uid, scores, labels = random_rows(3, n=200, users=6)
    iid = np.arange(len(uid)) % 5
    struct = DataStruct()
    struct["rec.score"] = torch.tensor(scores, dtype=torch.float)
    struct["data.label"] = torch.tensor(labels, dtype=torch.float)
    struct["data.uid"] = torch.tensor(uid)
    struct["data.iid"] = torch.tensor(iid)
    user_count = np.full(101, 10)
    user_count[1] = 0  # user 1 absent from train: cold
    struct["data.train_user_count"] = torch.from_numpy(user_count)
    struct["data.train_item_count"] = torch.from_numpy(np.full(5, 10))
    result = CollmEvaluator(config).evaluate(struct)
    cold = uid == 1
    assert result["cold_rows"] == cold.sum() and result["warm_rows"] == (~cold).sum()
    assert result["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-4)
    assert result["warm_auc"] == pytest.approx(roc_auc_score(labels[~cold], scores[~cold]), abs=1e-4)
    assert result["uauc"] == pytest.approx(uauc(uid, scores, labels), abs=1e-4)


def test_a_subset_of_one_row_has_no_metric_and_the_others_are_computed():
    config = tiny_config(metrics=["AUC", "UAUC", "LogLoss"])
    uid, scores, labels = random_rows(4, n=60, users=6)
    struct = DataStruct()
    struct["rec.score"] = torch.tensor(scores, dtype=torch.float)
    struct["data.label"] = torch.tensor(labels, dtype=torch.float)
    struct["data.uid"] = torch.tensor(uid)
    struct["data.iid"] = torch.tensor(np.arange(len(uid)) % 5)
    user_count = np.full(101, 10)
    user_count[99] = 0  # user 99 has one row: the cold subset is that row
    struct["data.train_user_count"] = torch.from_numpy(user_count)
    struct["data.train_item_count"] = torch.from_numpy(np.full(5, 10))
    result = CollmEvaluator(config).evaluate(struct)
    assert result["cold_rows"] == 1
    assert np.isnan(result["cold_auc"]) and np.isnan(result["cold_logloss"])
    warm = uid != 99
    assert result["warm_auc"] == pytest.approx(roc_auc_score(labels[warm], scores[warm]), abs=1e-4)
