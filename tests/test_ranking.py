"""Ranking evaluation (uniN / popN / full) for the labeled models, on RecBole's evaluator."""
import numpy as np
import pytest
import torch

from recbole_collm import load_data_and_model, run_recbole_collm
from recbole_collm.data import CollmDataset
from recbole_collm.data.dataloader import CandidateEvalDataLoader, RowFullSortEvalDataLoader
from recbole_collm.data.utils import data_preparation
from recbole_collm.errors import InputError
from recbole_collm.model.llm_recommender.tallrec import TALLRec
from tests.conftest import TINY_YAML, llm_config, tiny_config
from tests.ranks import hit, mrr, ndcg, target_ranks

RANKING = {"metrics": ["Hit", "NDCG", "MRR"], "topk": [3], "valid_metric": "NDCG@3"}


def ranking_args(mode):
    return {"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": None, "mode": mode}, **RANKING}


def loaders(mode, **overrides):
    config = tiny_config("MF", **ranking_args(mode), **overrides)
    dataset = CollmDataset(config)
    return config, dataset, data_preparation(config, dataset)


def test_candidates_are_seeded_distinct_unseen_and_same_for_every_model():
    config, dataset, (_, valid, test) = loaders("uni5")
    assert isinstance(test, CandidateEvalDataLoader)
    split = test._dataset
    assert (split.inter_feat["label"] == 1).all()  # label-0 rows are not queries
    full = dataset.inter_feat
    for q, (user, target) in enumerate(zip(split.inter_feat["user_id"].tolist(), split.inter_feat["item_id"].tolist())):
        cands = test.candidates[q]
        assert (cands == target).sum() == 1 and len(set(cands.tolist())) == 6 and 0 not in cands
        seen = set(full["item_id"][full["user_id"] == user].tolist())
        assert not seen & set(cands[cands != target].tolist())
    _, _, (_, _, again) = loaders("uni5", train_batch_size=7, learning_rate=0.5)  # another model's settings
    assert np.array_equal(again.candidates, test.candidates)
    assert not np.array_equal(valid.candidates[: len(test.candidates)], test.candidates[: len(valid.candidates)])


def test_the_targets_place_among_the_candidates_is_uniform_on_ml100k():
    """A prompt that lists the candidates shows their order; it must not tell which is the target.
    On ml-100k item ids follow popularity, so item-id order would (the same test rejects it)."""
    from scipy.stats import chisquare

    from recbole_collm import Config

    config = Config(model="MF", dataset="ml-100k", config_dict={
        "state": "WARNING", "metrics": ["Hit"], "topk": [1], "valid_metric": "Hit@1",
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user", "mode": "uni19"}})
    _, _, test = data_preparation(config, CollmDataset(config))
    targets = test._dataset.inter_feat["item_id"].numpy()[:, None]
    assert len(targets) > 4000
    place = (test.candidates == targets).argmax(1)
    assert chisquare(np.bincount(place, minlength=20)).pvalue > 0.01
    by_id = (np.sort(test.candidates, axis=1) == targets).argmax(1)
    assert chisquare(np.bincount(by_id, minlength=20)).pvalue < 1e-10


def test_pop_sampling_prefers_popular_items():
    _, _, (train, _, uni) = loaders("uni5")
    _, _, (_, _, pop) = loaders("pop5")
    count = train._dataset.train_item_count
    negatives = lambda loader: loader.candidates[loader.candidates != loader._dataset.inter_feat["item_id"].numpy()[:, None]]  # noqa: E731
    assert count[negatives(pop)].mean() > count[negatives(uni)].mean()


def test_batches_hold_whole_queries_in_recbole_ranking_form():
    _, _, (_, _, test) = loaders("uni5", eval_batch_size=20)
    batch, row_idx, positive_u, positive_i = next(iter(test))
    assert len(batch) == 18 and row_idx.tolist() == [0] * 6 + [1] * 6 + [2] * 6  # 3 queries of 1 + 5
    assert positive_u.tolist() == [0, 1, 2]
    assert ((batch["item_id"].view(3, 6) == positive_i[:, None]).sum(1) == 1).all()
    assert torch.equal(batch["item_id"].view(3, 6), torch.from_numpy(test.candidates[:3]))
    assert (batch["user_id"].view(3, 6) == batch["user_id"].view(3, 6)[:, :1]).all()


def test_value_metrics_with_a_ranking_mode_is_one_clear_error():
    config = tiny_config("MF", eval_args={"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "mode": "uni5"})
    with pytest.raises(InputError, match="ranking metrics"):
        data_preparation(config, CollmDataset(config))


def test_mf_ranks_end_to_end_in_every_mode(tmp_path):
    """Every mode's metrics equal the ones recomputed by hand from the saved model's own scores on
    the same queries (and each query's first hit, kept for paired comparisons)."""
    for mode in ("uni5", "pop5", "full"):
        result = run_recbole_collm(model="MF", dataset="tiny", config_file_list=[TINY_YAML],
                                   config_dict={"epochs": 2, "state": "WARNING", "checkpoint_dir": str(tmp_path),
                                                **ranking_args(mode)})
        found = result["test_result"]
        assert set(found) == {"hit@3", "ndcg@3", "mrr@3"}
        _, model, _, _, _, test = load_data_and_model(result["model_file"])
        ranks = target_ranks(model, test)
        assert len(ranks) == len(test._dataset) and 0 < hit(ranks, 3) < 1  # neither all nor none: the values tell
        assert found["hit@3"] == pytest.approx(round(hit(ranks, 3), 4), abs=1e-4)
        assert found["mrr@3"] == pytest.approx(round(mrr(ranks, 3), 4), abs=1e-4)
        assert found["ndcg@3"] == pytest.approx(round(ndcg(ranks, 3), 4), abs=1e-4)
        assert np.array_equal(found.first_hit, np.where(ranks < 3, ranks, -1))


def test_full_sort_caps_the_catalogue_to_popular_items():
    config, _, (train, _, test) = loaders("full", full_sort_items=10)
    assert isinstance(test, RowFullSortEvalDataLoader)
    count = train._dataset.train_item_count
    assert len(test.items) == 10 and count[test.items].min() >= np.sort(count[1:])[-10]


def test_full_sort_masks_the_items_the_user_already_has():
    config, dataset, (train, valid, test) = loaders("full", eval_batch_size=10 ** 6)
    splits = CollmDataset(config).build()  # every row of each split (the loaders keep the positive ones)
    for loader, earlier in ((valid, splits[:1]), (test, splits[:2])):
        rows, (row, item), _, targets = next(iter(loader))
        assert len(rows) == len(loader._dataset)  # one batch
        grew = 0
        for q, (user, seq, n) in enumerate(zip(rows["user_id"].tolist(), rows["item_id_list"].tolist(), rows["item_length"].tolist())):
            had = set().union(*(set(s.inter_feat["item_id"][s.inter_feat["user_id"] == user].tolist()) for s in earlier))
            assert set(item[row == q].tolist()) == had | set(seq[:n]) and (row == q).sum() == len(had | set(seq[:n]))
            grew += bool(set(seq[:n]) - had)
        assert grew  # some query's own split holds earlier positives of the user: they are masked too
    model_scores = torch.zeros(len(rows), dataset.item_num)
    model_scores[row, item] = -torch.inf  # what RecBole's trainer does with the loader's history_index
    assert torch.isinf(model_scores).sum() == len(item) > len(rows)


def test_collm_full_sort_and_candidates_equal_per_row_scores(tiny_llm_dir, tmp_path):
    config = llm_config("TALLRec", tiny_llm_dir, tmp_path, **ranking_args("uni5"), prefix_batch_size=2, llm_batch_size=4)
    dataset = CollmDataset(config)
    train, _, test = data_preparation(config, dataset)
    model = TALLRec(config, train._dataset).eval()
    rows = test._dataset.inter_feat[torch.arange(3)]
    model.catalogue = torch.tensor([2, 5, 7, 11])  # as full_sort_items would cap it
    with torch.no_grad():
        full = model.full_sort_predict(rows).view(3, -1)
        for r in range(3):
            for item in range(1, model.n_items):
                if item in (2, 5, 7, 11):
                    single = rows[[r]]
                    single["item_id"] = torch.tensor([item])
                    assert torch.allclose(full[r, item], model.predict(single)[0], atol=1e-5)
                else:
                    assert full[r, item] == -torch.inf
    result = run_recbole_collm(model="TALLRec", dataset="tiny", config_file_list=[TINY_YAML],
                               config_dict={"llm_path": str(tiny_llm_dir), "train_rows_limit": 16, "eval_rows_limit": 24, "state": "WARNING",
                                            "checkpoint_dir": str(tmp_path), "epochs": 1, **ranking_args("uni5")})
    assert set(result["test_result"]) == {"hit@3", "ndcg@3", "mrr@3"}
