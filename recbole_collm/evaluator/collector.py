"""RecBole's Collector, also collecting user and item ids per row (UAUC and warm/cold need them)
and, from the train data, the train counts that define warm and cold rows."""
from __future__ import annotations

import torch
from recbole.evaluator.collector import Collector, DataStruct

_ID_KEYS = ("data.uid", "data.iid")
COUNT_KEYS = ("data.train_user_count", "data.train_item_count")


class CollmCollector(Collector):
    """Collects ``data.uid`` and ``data.iid`` per labeled row (RecBole's collector passes neither
    to metrics), and in ``data_collect(train_data)`` — RecBole's hook, called by ``fit`` — the
    train interactions per user and per item of the whole train split (``CollmDataset`` counts
    them before ``train_rows_limit`` samples its rows)."""

    def __init__(self, config):
        super().__init__(config)
        self.uid_field, self.iid_field = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]

    def data_collect(self, train_data):
        super().data_collect(train_data)
        dataset = train_data.dataset
        counts = getattr(dataset, "train_user_count", None), getattr(dataset, "train_item_count", None)
        if counts[0] is not None:
            for key, count in zip(COUNT_KEYS, counts):
                self.data_struct.set(key, torch.as_tensor(count))

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        if scores_tensor.dim() == 2 and scores_tensor.shape[1] == 1 and len(scores_tensor) == len(interaction):
            scores_tensor = scores_tensor.squeeze(1)  # one score per row in a column (RecBole's KD_DAGFM)
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        if scores_tensor.dim() == 1 and self.uid_field in interaction:
            self.data_struct.update_tensor("data.uid", interaction[self.uid_field].to(self.device))
            self.data_struct.update_tensor("data.iid", interaction[self.iid_field].to(self.device))

    def get_data_struct(self):
        struct = super().get_data_struct()
        for key in _ID_KEYS:  # per evaluation, like the scores (RecBole keeps data.* keys)
            if key in self.data_struct:
                del self.data_struct[key]
        return struct


def take_rows(struct, mask: torch.Tensor):
    """A copy of a labeled-row DataStruct keeping only ``mask`` rows."""
    subset = DataStruct()
    for key in ("rec.score", "data.label", *_ID_KEYS):
        if key in struct:
            subset[key] = struct[key][mask]
    return subset
