"""Warm and cold evaluation subsets (CoLLM paper, Fig. 3)."""
from __future__ import annotations

import numpy as np


def warm_cold_masks(
    uid: np.ndarray,
    iid: np.ndarray,
    train_user_count: np.ndarray,
    train_item_count: np.ndarray,
    warm_threshold: int = 3,
    cold_threshold: int = 0,
) -> dict[str, np.ndarray]:
    """Boolean row masks.

    warm: user and item each have more than ``warm_threshold`` train interactions;
    cold: user or item has at most ``cold_threshold`` (by default: is absent from train).
    """
    user_count = train_user_count[uid]
    item_count = train_item_count[iid]
    return {
        "warm": (user_count > warm_threshold) & (item_count > warm_threshold),
        "cold": (user_count <= cold_threshold) | (item_count <= cold_threshold),
    }
