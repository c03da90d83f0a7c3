"""The converter that rebuilds the paper's ML-1M split from GroupLens' raw files."""
import calendar
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from recbole_collm.data.convert_ml1m import main, month_index, read_ratings, split_ratings


def ts(year, month, day=15):
    return calendar.timegm(datetime(year, month, day, 12, tzinfo=timezone.utc).timetuple())


def write_raw(folder: Path):
    # month 0 = April 2000; one rating in each boundary month, ratings 1..5
    rows = [
        (1, 10, 5, ts(2000, 4, 25)),  # month 0: dropped
        (1, 11, 4, ts(2001, 5, 31)),  # month 13: dropped
        (1, 12, 4, ts(2001, 6, 1)),   # month 14: train, label 1
        (2, 10, 3, ts(2002, 3, 31)),  # month 23: train, label 0 (3 is not > 3)
        (2, 11, 5, ts(2002, 4, 1)),   # month 24: valid
        (3, 12, 1, ts(2002, 8, 31)),  # month 28: valid
        (3, 10, 4, ts(2002, 9, 1)),   # month 29: test
        (1, 13, 2, ts(2003, 1, 31)),  # month 33: test
        (2, 13, 5, ts(2003, 2, 10)),  # month 34: dropped
    ]
    (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows))
    (folder / "movies.dat").write_bytes(
        "10::Toy Story (1995)::Animation\n11::Amélie (2001)::Comedy\n12::Heat (1995)::Action\n13::Big (1988)::Comedy\n"
        .encode("latin-1")
    )


def test_month_rule_and_labels(tmp_path):
    write_raw(tmp_path)
    ratings = read_ratings(tmp_path / "ratings.dat")
    assert list(month_index(ratings.timestamp)) == [0, 13, 14, 23, 24, 28, 29, 33, 34]
    splits = split_ratings(ratings)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [2, 2, 2]
    assert list(splits["train"].label) == [1, 0]
    assert list(splits["test"].item_id) == [10, 13]


def test_cli_writes_atomic_files_recbole_reads(tmp_path):
    write_raw(tmp_path)
    main(["--ratings", str(tmp_path / "ratings.dat"), "--movies", str(tmp_path / "movies.dat"),
          "--out", str(tmp_path / "out"), "--name", "mini"])
    folder = tmp_path / "out" / "mini"
    train = pd.read_csv(folder / "mini.train.inter", sep="\t")
    assert list(train.columns) == ["user_id:token", "item_id:token", "label:float", "timestamp:float"]
    items = pd.read_csv(folder / "mini.item", sep="\t")
    assert "Amélie (2001)" in set(items["movie_title:token_seq"])

    from recbole_collm import Config
    from recbole_collm.data import CollmDataset

    config = Config(model="MF", dataset="mini", config_dict={
        "data_path": str(tmp_path / "out"), "benchmark_filename": ["train", "valid", "test"],
        "threshold": None, "state": "WARNING",
        "load_col": {"inter": ["user_id", "item_id", "label", "timestamp"], "item": ["item_id", "movie_title"]},
    })
    assert len(CollmDataset(config).inter_feat) == 6


def test_reproduces_shared_split_from_raw_files(shared_ml1m):
    raw = os.environ.get("ML1M_RAW_DIR")
    if not raw or not Path(raw, "ratings.dat").is_file():
        pytest.skip("set ML1M_RAW_DIR to a folder with GroupLens ml-1m ratings.dat to compare with the shared split")
    splits = split_ratings(read_ratings(Path(raw) / "ratings.dat"))
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [33891, 10401, 7331]


@pytest.mark.shared_data
def test_shared_split_loads_with_paper_row_counts(shared_ml1m):
    from recbole.data import data_preparation

    from recbole_collm import Config
    from recbole_collm.data import CollmDataset

    config = Config(model="MF", dataset="ml-1m-collm", config_dict={"data_path": str(shared_ml1m.parent), "state": "WARNING"})
    dataset = CollmDataset(config)
    train, valid, test = data_preparation(config, dataset)
    assert [len(d.dataset) for d in (train, valid, test)] == [33891, 10401, 7331]
    assert dataset.user_num - 1 == 838 and dataset.item_num - 1 <= 3255
    assert sum(bool(t) for t in dataset.item_titles) == dataset.item_num - 1
