"""ItemRate: each item's smoothed positive rate in the train rows — what memorising the titles'
labels alone scores, the floor a text model that learns anything passes."""
from __future__ import annotations

import torch
from recbole.model.abstract_recommender import GeneralRecommender
from torch import nn

from recbole_collm.model.pointwise import PointwiseMixin


class ItemRate(PointwiseMixin, GeneralRecommender):
    """``P(like | item) = (positives_i + m·p) / (rows_i + m)`` over the train rows it is given,
    ``p`` their positive rate and ``m`` = ``item_rate_prior`` (a Beta prior's strength: an item
    seen in few rows stays near ``p``). Counted once when built; nothing trains (one epoch that
    changes nothing, as RecBole's ``Pop``). Run it with the train rows of the LLM it is a
    reference for (same ``train_rows_limit`` and ``train_rows_sample``)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._init_pointwise(config, dataset)
        prior = float(config["item_rate_prior"])
        items = dataset.inter_feat[self.ITEM_ID].long()
        labels = dataset.inter_feat[self.LABEL].float()
        rows = torch.bincount(items, minlength=self.n_items).float()
        positives = torch.bincount(items, weights=labels, minlength=self.n_items).float()
        base = labels.mean()
        rate = (positives + prior * base) / (rows + prior)
        self.register_buffer("item_logit", torch.logit(rate.clamp(1e-6, 1 - 1e-6)))
        self.fake_loss = nn.Parameter(torch.zeros(1))  # RecBole's trainer needs one parameter

    def logits(self, interaction) -> torch.Tensor:
        return self.item_logit[interaction[self.ITEM_ID]]

    def calculate_loss(self, interaction) -> torch.Tensor:
        return self.fake_loss.sum() * 0.0

    def full_sort_predict(self, interaction) -> torch.Tensor:
        scores = torch.sigmoid(self.item_logit).expand(len(interaction), -1)
        return self.mask_to_catalogue(scores)
