"""RecBole atomic files for a labeled, pre-split dataset: what the dataset converters write."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

INTER_HEADER = ["user_id:token", "item_id:token", "label:float", "timestamp:float"]


def write_labeled_splits(splits: dict[str, pd.DataFrame], items: pd.DataFrame, title_field: str, out_dir: str | Path, name: str) -> Path:
    """``<out>/<name>/<name>.<split>.inter`` (``user_id item_id label timestamp``) for each split,
    and ``<name>.item`` (``item_id <title_field>``) for the items the splits use."""
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in splits.items():
        frame[["user_id", "item_id", "label", "timestamp"]].to_csv(folder / f"{name}.{split}.inter", sep="\t", index=False, header=INTER_HEADER)
    used = pd.concat(splits.values())["item_id"].unique()
    items = items[items["item_id"].isin(used)][["item_id", title_field]]
    items.to_csv(folder / f"{name}.item", sep="\t", index=False, header=["item_id:token", f"{title_field}:token_seq"])
    return folder
