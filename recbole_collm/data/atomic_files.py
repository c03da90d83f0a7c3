"""RecBole atomic files (RecBole's name for its tab-separated data files) for a labeled, pre-split
dataset: what the dataset converters write, each file written atomically."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from recbole_collm.files import atomic_write

INTER_HEADER = ["user_id:token", "item_id:token", "label:float", "timestamp:float"]


def write_labeled_splits(splits: dict[str, pd.DataFrame], items: pd.DataFrame, title_field: str, out_dir: str | Path, name: str) -> Path:
    """``<out>/<name>/<name>.<split>.inter`` (``user_id item_id label timestamp``) for each split,
    and ``<name>.item`` (``item_id <title_field>``) for the items the splits use."""
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in splits.items():
        columns = frame[["user_id", "item_id", "label", "timestamp"]]
        atomic_write(folder / f"{name}.{split}.inter",
                     lambda tmp, c=columns: c.to_csv(tmp, sep="\t", index=False, header=INTER_HEADER))
    used = pd.concat(splits.values())["item_id"].unique()
    items = items[items["item_id"].isin(used)][["item_id", title_field]]
    atomic_write(folder / f"{name}.item",
                 lambda tmp: items.to_csv(tmp, sep="\t", index=False, header=["item_id:token", f"{title_field}:token_seq"]))
    return folder
