"""The paper's LightGCN: trained pointwise with BCE on a graph of the liked train rows."""
from __future__ import annotations

import torch
from recbole.model.general_recommender.lightgcn import LightGCN as RecBoleLightGCN

from recbole_collm.model.pointwise import PointwiseMixin


class LightGCNCTR(PointwiseMixin, RecBoleLightGCN):
    """RecBole's LightGCN propagation on the graph of the liked train rows (the plugin's dataset
    gives RecBole's ``inter_matrix`` those only: dislikes are not edges), trained with BCE on the
    label plus RecBole's L2 on the ego embeddings (the paper's LightGCN; RecBole's own
    ``LightGCN`` is BPR on the liked rows)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._init_pointwise(config, dataset)
        self.vector_dim = self.latent_dim

    def user_item_vectors(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        user_all, item_all = self.forward()
        return user_all[interaction[self.USER_ID]], item_all[interaction[self.ITEM_ID]]

    def logits(self, interaction) -> torch.Tensor:
        user, item = self.user_item_vectors(interaction)
        return (user * item).sum(-1)

    def regularization(self, interaction) -> torch.Tensor:
        ego_user = self.user_embedding(interaction[self.USER_ID])
        ego_item = self.item_embedding(interaction[self.ITEM_ID])
        return self.reg_weight * self.reg_loss(ego_user, ego_item, require_pow=self.require_pow)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_all, item_all = self.forward()
        return self.mask_to_catalogue(torch.sigmoid(user_all[interaction[self.USER_ID]] @ item_all.T))
