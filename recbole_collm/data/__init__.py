"""Data: the labeled dataset with histories and titles, loaders, and their creation."""
from recbole_collm.data.dataset import CollmDataset
from recbole_collm.data.history import last_positive_history
from recbole_collm.data.utils import create_dataset, data_preparation

__all__ = ["CollmDataset", "create_dataset", "data_preparation", "last_positive_history"]
