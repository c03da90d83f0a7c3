"""The labeled dataset: threshold labels, time-ordered split, histories, titles, benchmark files."""
import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data import data_preparation

from recbole_collm.data import CollmDataset, last_positive_history
from recbole_collm.errors import InputError
from tests.conftest import ROOT, tiny_config

RAW = pd.read_csv(ROOT / "tests/data/tiny/tiny.inter", sep="\t")
RAW.columns = ["user_id", "item_id", "rating", "timestamp"]
# RecBole keeps float fields as float32 tensors: compare timestamps at that precision
RAW["ts32"] = RAW.timestamp.astype(np.float32)


def build(config):
    dataset = CollmDataset(config)
    return dataset, dataset.build()


def tokens(dataset, field, ids):
    return dataset.id2token(field, np.asarray(ids)).astype(int)


def test_labels_are_rating_above_three_and_split_is_time_ordered():
    dataset, (train, valid, test) = build(tiny_config())
    assert [len(train), len(valid), len(test)] == [720, 90, 90]
    t = [d.inter_feat["timestamp"].numpy() for d in (train, valid, test)]
    assert t[0].max() <= t[1].min() and t[1].max() <= t[2].min()
    feat = dataset.inter_feat
    key = pd.DataFrame({
        "user_id": tokens(dataset, "user_id", feat["user_id"]),
        "item_id": tokens(dataset, "item_id", feat["item_id"]),
        "ts32": feat["timestamp"].numpy(),
        "label": feat["label"].numpy(),
    })
    merged = key.merge(RAW, on=["user_id", "item_id", "ts32"])
    assert len(merged) == len(RAW)
    np.testing.assert_array_equal(merged["label"], (merged["rating"] > 3).astype(float))


def test_history_field_is_cross_split_positive_history():
    dataset, (train, valid, test) = build(tiny_config())
    want_hist, want_len = last_positive_history(
        RAW.user_id.values, RAW.item_id.values, RAW.timestamp.values, (RAW.rating > 3).values, 10
    )
    want = {
        (u, i, t): (list(h[:n]))
        for u, i, t, h, n in zip(RAW.user_id, RAW.item_id, RAW.ts32, want_hist, want_len)
    }
    checked_cross_split = 0
    for part in (train, valid, test):
        feat = part.inter_feat
        users = tokens(dataset, "user_id", feat["user_id"])
        items = tokens(dataset, "item_id", feat["item_id"])
        for row, (u, i, ts) in enumerate(zip(users, items, feat["timestamp"].numpy())):
            n = int(feat["item_length"][row])
            got = list(tokens(dataset, "item_id", feat["item_id_list"][row][:n])) if n else []
            assert got == want[(u, i, ts)]
            assert (feat["item_id_list"][row][n:] == 0).all()
            checked_cross_split += part is test and n > 0
    assert checked_cross_split > 0


def test_titles_kept_as_text_not_as_features():
    dataset, _ = build(tiny_config())
    item = tokens(dataset, "item_id", [1])[0]
    assert dataset.item_titles[1].endswith(f"({1989 + item})")
    assert dataset.item_titles[0] == ""  # padding id
    assert "movie_title" not in dataset.item_feat


def test_the_train_split_counts_its_rows_for_warm_and_cold():
    _, (train, valid, test) = build(tiny_config())
    users = np.bincount(train.inter_feat["user_id"].numpy(), minlength=train.user_num)
    items = np.bincount(train.inter_feat["item_id"].numpy(), minlength=train.item_num)
    np.testing.assert_array_equal(train.train_user_count, users)
    np.testing.assert_array_equal(train.train_item_count, items)
    assert not hasattr(valid, "train_user_count") and not hasattr(test, "train_item_count")


def test_labels_outside_0_1_are_one_clear_error(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    frame = RAW.head(50).copy()
    frame["label"] = 1.0
    frame.loc[3, "label"] = 2.0
    frame[["user_id", "item_id", "label", "timestamp"]].to_csv(
        folder / "bad.inter", sep="\t", index=False,
        header=["user_id:token", "item_id:token", "label:float", "timestamp:float"],
    )
    from recbole_collm import Config

    config = Config(model="MF", dataset="bad", config_dict={
        "data_path": str(tmp_path), "threshold": None, "state": "WARNING",
        "load_col": {"inter": ["user_id", "item_id", "label", "timestamp"]},
    })
    with pytest.raises(ValueError, match=r"bad.inter: field 'label' must be 0 or 1, found 2.0"):
        CollmDataset(config)


def test_missing_dataset_folder_says_where(tmp_path):
    from recbole_collm import Config

    config = Config(model="MF", dataset="nowhere", config_dict={"data_path": str(tmp_path / "x"), "state": "WARNING"})
    with pytest.raises(FileNotFoundError, match="data_path: no folder"):
        CollmDataset(config)


def test_benchmark_files_keep_their_split_and_share_history(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    frame = RAW.copy()
    frame["label"] = (frame.rating > 3).astype(int)
    cut = [0, 600, 750, len(frame)]
    header = ["user_id:token", "item_id:token", "label:float", "timestamp:float"]
    for name, lo, hi in zip(["train", "valid", "test"], cut[:-1], cut[1:]):
        frame.iloc[lo:hi][["user_id", "item_id", "label", "timestamp"]].to_csv(
            folder / f"bench.{name}.inter", sep="\t", index=False, header=header)
    (folder / "bench.item").write_text((ROOT / "tests/data/tiny/tiny.item").read_text())
    from recbole_collm import Config

    config = Config(model="MF", dataset="bench", config_dict={
        "data_path": str(tmp_path), "benchmark_filename": ["train", "valid", "test"], "threshold": None,
        "state": "WARNING", "load_col": {"inter": ["user_id", "item_id", "label", "timestamp"], "item": ["item_id", "movie_title"]},
    })
    dataset = CollmDataset(config)
    train, valid, test = data_preparation(config, dataset)
    assert [len(d.dataset) for d in (train, valid, test)] == [600, 150, 150]
    # a test row whose user had positives in the valid file: its history includes them
    feat = test.dataset.inter_feat
    valid_part = frame.iloc[600:750]
    checked = 0
    for row in range(len(feat)):
        user = tokens(dataset, "user_id", feat["user_id"][row : row + 1])[0]
        if not ((valid_part.user_id == user) & (valid_part.label == 1)).any():
            continue
        ts = float(np.float32(feat["timestamp"][row]))
        earlier = frame[(frame.user_id == user) & (frame.label == 1) & (frame.timestamp.astype(np.float32) < ts)]
        n = int(feat["item_length"][row])
        assert list(tokens(dataset, "item_id", feat["item_id_list"][row][:n])) == earlier.item_id.tolist()[-10:]
        checked += 1
        if checked == 5:
            break
    assert checked == 5


def test_row_limits_keep_recent_train_rows_and_full_train_counts():
    _, (train, _, _) = build(tiny_config())
    _, (small_train, small_valid, small_test) = build(tiny_config(train_rows_limit=100, eval_rows_limit=30))
    assert [len(small_train), len(small_valid), len(small_test)] == [100, 30, 30]
    times = train.inter_feat["timestamp"].numpy()
    assert small_train.inter_feat["timestamp"].numpy().min() >= np.sort(times)[-100]
    # warm/cold membership must not depend on the CPU budget: the counts are the whole split's
    np.testing.assert_array_equal(small_train.train_user_count, train.train_user_count)
    np.testing.assert_array_equal(small_train.train_item_count, train.train_item_count)


def test_ml100k_splits_per_user_by_default_and_globally_as_a_named_setting():
    """Per user, test users have a training history (47 cold test rows); the global time split
    (properties/split/global_time.yaml) leaves most test rows cold."""
    from recbole_collm import Config

    def counts(files):
        config = Config(model="MF", dataset="ml-100k", config_file_list=files, config_dict={"state": "WARNING"})
        train, valid, test = CollmDataset(config).build()
        users, items = test.inter_feat["user_id"].numpy(), test.inter_feat["item_id"].numpy()
        cold = (train.train_user_count[users] == 0) | (train.train_item_count[items] == 0)
        return len(train), len(valid), len(test), int(np.sum(cold))

    assert counts(None) == (80808, 9596, 9596, 47)
    assert counts(["split/global_time.yaml"]) == (80000, 10000, 10000, 8656)  # a named setting


def test_train_rows_sample_random_is_seeded_and_leaves_the_eval_sample_alone():
    def splits(**settings):
        return CollmDataset(tiny_config("MF", train_rows_limit=100, eval_rows_limit=20, **settings)).build()

    recent, random_a, random_b = splits(), splits(train_rows_sample="random"), splits(train_rows_sample="random")
    times = lambda split: split.inter_feat["timestamp"]  # noqa: E731
    assert len(recent[0]) == len(random_a[0]) == 100
    assert torch.equal(times(random_a[0]), times(random_b[0]))  # seeded
    assert not torch.equal(times(random_a[0]), times(recent[0]))
    assert times(random_a[0]).min() < times(recent[0]).min()  # older rows too, not only the last 100
    for k in (1, 2):  # the same valid/test sample either way
        assert torch.equal(times(random_a[k]), times(recent[k]))
    with pytest.raises(InputError, match="train_rows_sample: 'newest' is not one of recent, random"):
        splits(train_rows_sample="newest")
