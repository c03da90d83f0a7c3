"""The paper's SASRec: RecBole's encoder over the liked history, scoring the target item pointwise with
BCE on the label (RecBole's own ``SASRec`` is the next-item model)."""
from __future__ import annotations

import torch
from recbole.model.sequential_recommender.sasrec import SASRec as RecBoleSASRec

from recbole_collm.model.pointwise import PointwiseMixin


class SASRecCTR(PointwiseMixin, RecBoleSASRec):
    """RecBole's SASRec encoder on ``item_id_list`` (the last positive items); the logit is the
    sequence representation · the target item's embedding. An empty history is encoded as the
    all-padding sequence read at position 0."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._init_pointwise(config, dataset)
        self.vector_dim = self.hidden_size

    def user_item_vectors(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        seq_len = interaction[self.ITEM_SEQ_LEN].clamp(min=1)
        user = self.forward(interaction[self.ITEM_SEQ], seq_len)
        return user, self.item_embedding(interaction[self.ITEM_ID])

    def logits(self, interaction) -> torch.Tensor:
        user, item = self.user_item_vectors(interaction)
        return (user * item).sum(-1)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        seq_len = interaction[self.ITEM_SEQ_LEN].clamp(min=1)
        user = self.forward(interaction[self.ITEM_SEQ], seq_len)
        return self.mask_to_catalogue(torch.sigmoid(user @ self.item_embedding.weight.T))
