"""Build the CoLLM paper's Amazon-Book split as RecBole atomic files from the raw Amazon review
files (2018 release, one JSON object per line, plain or gzipped).

    python -m recbole_collm.data.convert_amazon_book --reviews Books.json.gz --meta meta_Books.json.gz --out dataset/

Protocol of the official notebook (``dataset/amazon_book/processing_ood.ipynb``, which reads the
5-core ``Books_5.json.gz``; any reviews file of the release works here):

- reviews are joined with the metadata by ``asin``; metadata rows whose title holds the
  unformatted ``getTime`` marker are dropped, the last row of a repeated ``asin`` wins, a missing
  title is the empty string; reviews of items without metadata are dropped;
- only reviews of the year 2017 (UTC) are kept; users and items with **more than 20** of those
  reviews are kept (both counted once, before either filter);
- label = 1 when the rating is 5, else 0;
- January–November is train; December, sorted by time, is cut in half: the first half valid, the
  second half test.

Writes ``<out>/<name>/<name>.{train,valid,test}.inter`` (``user_id item_id label timestamp``, each
in time order) and ``<name>.item`` (``item_id book_title``).
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from recbole_collm.data.atomic_files import write_labeled_splits
from recbole_collm.errors import InputError, MissingInputError

YEAR = 2017
MIN_INTERACTIONS = 20  # kept: strictly more than this many reviews in the year
REVIEW_FIELDS = {"overall": "rating", "reviewerID": "user_id", "asin": "item_id", "unixReviewTime": "timestamp"}


def json_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every non-empty line; a line that is not a JSON object is one
    error naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}, line {number}: not a JSON object ({err.msg})") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}, line {number}: not a JSON object")
            yield number, record


def read_reviews(path: str | Path, year: int = YEAR) -> pd.DataFrame:
    """The reviews of ``year`` (UTC) with ``rating``, ``user_id``, ``item_id``, ``timestamp``."""
    start = pd.Timestamp(f"{year}-01-01", tz="UTC").timestamp()
    end = pd.Timestamp(f"{year + 1}-01-01", tz="UTC").timestamp()
    rows = []
    for number, record in json_lines(path):
        missing = [k for k in REVIEW_FIELDS if record.get(k) is None]
        if missing:
            raise InputError(f"{path}, line {number}: no '{missing[0]}' field (a review needs {', '.join(REVIEW_FIELDS)})")
        try:
            when, rating = int(record["unixReviewTime"]), float(record["overall"])
        except (TypeError, ValueError):
            raise InputError(f"{path}, line {number}: 'unixReviewTime' and 'overall' must be numbers") from None
        if start <= when < end:
            rows.append((rating, str(record["reviewerID"]), str(record["asin"]), when))
    return pd.DataFrame(rows, columns=list(REVIEW_FIELDS.values()))


def read_titles(path: str | Path, wanted: set[str]) -> dict[str, str]:
    """``asin → title`` for the wanted items (the notebook's metadata cleaning)."""
    titles = {}
    for number, record in json_lines(path):
        if "asin" not in record:
            raise InputError(f"{path}, line {number}: no 'asin' field")
        title = record.get("title") or ""
        if record["asin"] in wanted and "getTime" not in title:
            titles[record["asin"]] = " ".join(str(title).split())  # no tabs or newlines in an atomic file
    return titles


def build_splits(reviews: pd.DataFrame, titles: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Join, filter, label and split as the official notebook does."""
    frame = reviews[reviews["item_id"].isin(titles.keys())]
    users, items = frame["user_id"].value_counts(), frame["item_id"].value_counts()
    frame = frame[
        frame["user_id"].isin(users.index[users > MIN_INTERACTIONS]) & frame["item_id"].isin(items.index[items > MIN_INTERACTIONS])
    ].copy()
    if frame.empty:
        raise InputError(f"no review is left after the protocol's filters (year {YEAR}, users and items with "
                         f"more than {MIN_INTERACTIONS} reviews, an item in the metadata)")
    frame["label"] = (frame["rating"] >= 5).astype(int)
    frame = frame.sort_values("timestamp", kind="stable")
    month = pd.to_datetime(frame["timestamp"], unit="s", utc=True).dt.month
    december = frame[month == 12]
    half = len(december) // 2
    columns = ["user_id", "item_id", "label", "timestamp"]
    return {"train": frame[month <= 11][columns], "valid": december.iloc[:half][columns], "test": december.iloc[half:][columns]}


def write_atomic(splits: dict[str, pd.DataFrame], titles: dict[str, str], out_dir: str | Path, name: str) -> Path:
    items = pd.DataFrame({"item_id": list(titles), "book_title": list(titles.values())})
    return write_labeled_splits(splits, items, "book_title", out_dir, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", required=True, help="Books.json(.gz) or Books_5.json(.gz)")
    parser.add_argument("--meta", required=True, help="meta_Books.json(.gz)")
    parser.add_argument("--out", default="dataset")
    parser.add_argument("--name", default="amazon-book-collm")
    args = parser.parse_args(argv)
    try:
        reviews = read_reviews(args.reviews)
        titles = read_titles(args.meta, set(reviews["item_id"]))
        splits = build_splits(reviews, titles)
    except InputError as err:
        print(f"convert_amazon_book: error: {err}", file=sys.stderr)
        return 2
    folder = write_atomic(splits, titles, args.out, args.name)
    print(f"wrote {folder}: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
