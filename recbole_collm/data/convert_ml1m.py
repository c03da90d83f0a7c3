"""Build the CoLLM paper's ML-1M split as RecBole atomic files from GroupLens' raw files.

    python -m recbole_collm.data.convert_ml1m --ratings ml-1m/ratings.dat --movies ml-1m/movies.dat --out dataset/

Rule (paper): month index counted from the first month in the ratings (April 2000 = 0, UTC);
months 14-23 train, 24-28 valid, 29-33 test; label = rating > 3. Rows stay in time order.
Writes ``<out>/<name>/<name>.{train,valid,test}.inter`` and ``<name>.item`` (titles with year).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from recbole_collm.data.atomic_files import write_labeled_splits

SPLITS = {"train": (14, 23), "valid": (24, 28), "test": (29, 33)}


def read_ratings(path: str | Path) -> pd.DataFrame:
    """GroupLens ``UserID::MovieID::Rating::Timestamp`` lines."""
    frame = pd.read_csv(path, sep="::", engine="python", header=None, names=["user_id", "item_id", "rating", "timestamp"])
    if frame.isna().any().any():
        raise ValueError(f"{path}: expected UserID::MovieID::Rating::Timestamp on every line")
    return frame


def read_movies(path: str | Path) -> pd.DataFrame:
    """GroupLens ``MovieID::Title::Genres`` lines (latin-1, as shipped)."""
    return pd.read_csv(path, sep="::", engine="python", header=None, names=["item_id", "movie_title", "genres"], encoding="latin-1")


def month_index(timestamps: pd.Series) -> pd.Series:
    """Months since the month of the earliest timestamp (UTC calendar months)."""
    when = pd.to_datetime(timestamps, unit="s", utc=True)
    first = when.min()
    return (when.dt.year - first.year) * 12 + (when.dt.month - first.month)


def split_ratings(ratings: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The paper's three splits, each in time order (stable for equal timestamps)."""
    frame = ratings.copy()
    frame["label"] = (frame["rating"] > 3).astype(int)
    frame["month"] = month_index(frame["timestamp"])
    frame = frame.sort_values("timestamp", kind="stable")
    return {
        name: frame[(frame["month"] >= lo) & (frame["month"] <= hi)][["user_id", "item_id", "label", "timestamp"]]
        for name, (lo, hi) in SPLITS.items()
    }


def write_atomic(splits: dict[str, pd.DataFrame], movies: pd.DataFrame, out_dir: str | Path, name: str) -> Path:
    return write_labeled_splits(splits, movies, "movie_title", out_dir, name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", required=True)
    parser.add_argument("--movies", required=True)
    parser.add_argument("--out", default="dataset")
    parser.add_argument("--name", default="ml-1m-collm")
    args = parser.parse_args(argv)
    splits = split_ratings(read_ratings(args.ratings))
    folder = write_atomic(splits, read_movies(args.movies), args.out, args.name)
    print(f"wrote {folder}: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))


if __name__ == "__main__":
    main()
