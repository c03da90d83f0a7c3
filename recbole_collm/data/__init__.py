"""Data: the labeled dataset with histories and titles, and dataset creation."""
from __future__ import annotations

from recbole.data import create_dataset as create_recbole_dataset
from recbole.utils import ModelType

from recbole_collm.data.dataset import CollmDataset
from recbole_collm.data.history import last_positive_history


def create_dataset(config):
    """``CollmDataset`` for labeled (context-type) models, RecBole's dataset for the others."""
    if config["MODEL_TYPE"] == ModelType.CONTEXT:
        return CollmDataset(config)
    return create_recbole_dataset(config)


__all__ = ["CollmDataset", "create_dataset", "last_positive_history"]
