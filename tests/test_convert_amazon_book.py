"""The converter that builds the paper's Amazon-Book split from the raw 2018 review files: every
rule of the official notebook on a small synthetic raw file."""
import gzip
import json
from datetime import datetime, timezone

import pandas as pd
import pytest

from recbole_collm import Config
from recbole_collm.data import CollmDataset
from recbole_collm.data.convert_amazon_book import build_splits, main, read_reviews, read_titles
from recbole_collm.errors import InputError

NAME = "amazon-book-collm"


def ts(*when):
    return int(datetime(*when, tzinfo=timezone.utc).timestamp())


def review(user, item, rating, when):
    return {"overall": float(rating), "reviewerID": user, "asin": item, "unixReviewTime": when, "reviewText": "..."}


def raw_files(folder):
    """22 users x 22 items over 2017, plus one case per rule."""
    reviews = []
    users, items = [f"u{k}" for k in range(22)], [f"i{k}" for k in range(22)]
    grid = [(u, i) for i in items for u in users]
    year = ts(2018, 1, 1) - ts(2017, 1, 1)
    for k, (u, i) in enumerate(grid):  # spread over the year; ratings 1..5
        reviews.append(review(u, i, 1 + k % 5, ts(2017, 1, 1) + k * year // len(grid)))
    reviews += [review("light", f"i{k}", 5, ts(2017, 3, 1 + k)) for k in range(19)]  # 20 with "edge": dropped
    reviews += [review(f"u{k}", "edge", 5, ts(2017, 4, 1 + k)) for k in range(20)]
    reviews.append(review("light", "edge", 5, ts(2017, 4, 25)))  # 21 for "edge", counted before filtering users
    reviews += [review(f"u{k}", "rare", 5, ts(2017, 5, 1 + k)) for k in range(20)]  # exactly 20: dropped
    # 20 reviews of items with metadata + 3 of an item without (or with a getTime title): dropped
    reviews += [review("metaless", f"i{k}", 4, ts(2017, 6, 1 + k)) for k in range(20)]
    reviews += [review("metaless", "nometa", 4, ts(2017, 7, 1 + k)) for k in range(2)]
    reviews += [review("metaless", "gettime", 4, ts(2017, 7, 5))]
    reviews += [review(f"u{k}", "nometa", 5, ts(2017, 8, 1)) for k in range(22)]
    reviews += [review(f"u{k}", "gettime", 5, ts(2017, 8, 2)) for k in range(22)]
    reviews.append(review("u0", "i0", 5, ts(2016, 12, 31, 23, 59, 59)))  # other years: dropped
    reviews.append(review("u0", "i1", 5, ts(2018, 1, 1)))
    meta = [{"asin": i, "title": f"Book {i}: a\ttale"} for i in items if i not in ("i1", "i2")]
    meta += [{"asin": "i1", "title": "Old"}, {"asin": "i1", "title": "New"}, {"asin": "i2"}]
    meta += [{"asin": "edge", "title": "Edge"}, {"asin": "rare", "title": "Rare"},
             {"asin": "gettime", "title": "var x = new Date().getTime();"}]
    with gzip.open(folder / "Books.json.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in reviews)
    (folder / "meta_Books.json").write_text("".join(json.dumps(m) + "\n" for m in meta))
    return folder / "Books.json.gz", folder / "meta_Books.json"


@pytest.fixture
def splits(tmp_path):
    reviews_path, meta_path = raw_files(tmp_path)
    reviews = read_reviews(reviews_path)
    return build_splits(reviews, read_titles(meta_path, set(reviews["item_id"]))), reviews, tmp_path


def test_year_join_and_activity_filters(splits):
    out, reviews, _ = splits
    assert reviews["timestamp"].min() >= ts(2017, 1, 1) and reviews["timestamp"].max() < ts(2018, 1, 1)
    rows = pd.concat(out.values())
    assert set(rows["user_id"]) == {f"u{k}" for k in range(22)}  # light (20) and metaless (20 + 3 metaless) dropped
    assert set(rows["item_id"]) == {f"i{k}" for k in range(22)} | {"edge"}  # rare (20), nometa, gettime dropped
    assert (rows["item_id"] == "edge").sum() == 20  # kept: 21 reviews before the user filter
    assert len(rows) == 22 * 22 + 20


def test_label_is_rating_five(splits):
    out, reviews, _ = splits
    rows = pd.concat(out.values()).merge(reviews, on=["user_id", "item_id", "timestamp"])
    assert ((rows["rating"] == 5) == (rows["label"] == 1)).all() and set(rows["label"]) == {0, 1}


def test_december_is_halved_by_time_into_valid_and_test(splits):
    out, _, _ = splits
    month = {k: pd.to_datetime(v["timestamp"], unit="s", utc=True).dt.month for k, v in out.items()}
    assert month["train"].between(1, 11).all() and (month["valid"] == 12).all() and (month["test"] == 12).all()
    december = len(out["valid"]) + len(out["test"])
    assert december == 41 and len(out["valid"]) == december // 2 == 20  # the first half: floor
    assert out["valid"]["timestamp"].max() <= out["test"]["timestamp"].min()
    for frame in out.values():
        assert frame["timestamp"].is_monotonic_increasing


def test_titles_from_metadata(splits):
    _, reviews, tmp_path = splits
    titles = read_titles(tmp_path / "meta_Books.json", set(reviews["item_id"]))
    assert titles["i1"] == "New" and titles["i2"] == "" and titles["i3"] == "Book i3: a tale"  # last wins, no tabs
    assert "gettime" not in titles and "nometa" not in titles


def test_cli_writes_files_recbole_loads(tmp_path):
    reviews_path, meta_path = raw_files(tmp_path)
    assert main(["--reviews", str(reviews_path), "--meta", str(meta_path), "--out", str(tmp_path / "out")]) == 0
    config = Config(model="MF", dataset=NAME, config_dict={"data_path": str(tmp_path / "out"), "state": "WARNING"})
    assert config["domain_item"] == "book" and config["title_field"] == "book_title"
    dataset = CollmDataset(config)
    train, valid, test = dataset.build()
    assert (len(train), len(valid), len(test)) == (22 * 22 + 20 - 41, 20, 21)
    edge = dataset.token2id(dataset.iid_field, "edge")
    assert dataset.item_titles[edge] == "Edge"


@pytest.mark.parametrize("line, message", [
    ("{not json", r"Books\.json, line 3: not a JSON object"),
    ('["a list"]', r"Books\.json, line 3: not a JSON object"),
    ('{"reviewerID": "u", "asin": "i", "unixReviewTime": 1}', r"Books\.json, line 3: no 'overall' field"),
    ('{"overall": "five", "reviewerID": "u", "asin": "i", "unixReviewTime": 1}', r"line 3: 'unixReviewTime' and 'overall' must be numbers"),
])
def test_malformed_line_is_one_error_naming_it(tmp_path, line, message, capsys):
    good = json.dumps(review("u", "i", 5, ts(2017, 2, 1)))
    (tmp_path / "Books.json").write_text(f"{good}\n\n{line}\n{good}\n")
    with pytest.raises(InputError, match=message):
        read_reviews(tmp_path / "Books.json")
    (tmp_path / "meta.json").write_text('{"asin": "i", "title": "T"}\n')
    assert main(["--reviews", str(tmp_path / "Books.json"), "--meta", str(tmp_path / "meta.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 3" in err


def test_nothing_left_after_the_filters_is_an_error(tmp_path):
    (tmp_path / "Books.json").write_text(json.dumps(review("u", "i", 5, ts(2017, 2, 1))) + "\n")
    (tmp_path / "meta.json").write_text('{"asin": "i", "title": "T"}\n')
    with pytest.raises(InputError, match="no review is left"):
        build_splits(read_reviews(tmp_path / "Books.json"), read_titles(tmp_path / "meta.json", {"i"}))
