"""RecBole's Collector, also collecting user and item ids (UAUC and warm/cold need them)."""
from __future__ import annotations

import torch
from recbole.evaluator.collector import Collector

_ID_KEYS = ("data.uid", "data.iid")


class CollmCollector(Collector):
    """Collects ``data.uid`` and ``data.iid`` per labeled row; RecBole's collector passes
    neither to metrics."""

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        if scores_tensor.dim() == 1 and self.config["USER_ID_FIELD"] in interaction:
            self.data_struct.update_tensor(
                "data.uid", interaction[self.config["USER_ID_FIELD"]].to(self.device)
            )
            self.data_struct.update_tensor(
                "data.iid", interaction[self.config["ITEM_ID_FIELD"]].to(self.device)
            )

    def get_data_struct(self):
        struct = super().get_data_struct()
        for key in _ID_KEYS:
            if key in self.data_struct:
                struct[key] = self.data_struct[key].cpu()
                del self.data_struct[key]
        return struct


def take_rows(struct, mask: torch.Tensor):
    """A copy of a labeled-row DataStruct keeping only ``mask`` rows."""
    from recbole.evaluator.collector import DataStruct

    subset = DataStruct()
    for key in ("rec.score", "data.label", *_ID_KEYS):
        if key in struct:
            subset[key] = struct[key][mask]
    return subset
