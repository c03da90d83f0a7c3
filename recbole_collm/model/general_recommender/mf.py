"""MF: dot product of user and item embeddings, trained pointwise with BCE (CoLLM's MF)."""
from __future__ import annotations

import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_normal_initialization
from torch import nn

from recbole_collm.model.pointwise import PointwiseMixin


class MF(PointwiseMixin, GeneralRecommender):
    """Matrix factorization on labeled rows: ``sigmoid(<u, i>)`` is P(label = 1)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._init_pointwise(config, dataset)
        self.embedding_size = self.vector_dim = config["embedding_size"]
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.apply(xavier_normal_initialization)

    def user_item_vectors(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            self.user_embedding(interaction[self.USER_ID]),
            self.item_embedding(interaction[self.ITEM_ID]),
        )

    def logits(self, interaction) -> torch.Tensor:
        user, item = self.user_item_vectors(interaction)
        return (user * item).sum(-1)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user = self.user_embedding(interaction[self.USER_ID])
        return self.mask_to_catalogue(torch.sigmoid(user @ self.item_embedding.weight.T))
