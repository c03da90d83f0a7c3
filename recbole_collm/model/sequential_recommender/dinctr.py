"""The paper's DIN (its official ``RecEncoder_DIN``) on the liked history (RecBole's own ``DIN`` is
RecBole's composition)."""
from __future__ import annotations

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.init import xavier_normal_initialization
from torch import nn
from torch.nn import functional as F

from recbole_collm.errors import InputError
from recbole_collm.model.pointwise import PointwiseMixin


class Dice(nn.Module):
    """DIN's data-adaptive activation: ``p·x + (1 − p)·α·x`` with ``p = sigmoid(BN(x))`` and a
    learned ``α`` per channel. RecBole's own ``Dice`` keeps α fixed at 0 and has no batch
    normalization (it is ``x·sigmoid(x)``); the paper's needs both. Channels are the last
    dimension; every other dimension is the batch. A batch of one row in training mode uses the
    running statistics (batch statistics of one value are undefined)."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels, eps=eps)
        self.alpha = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        bn = self.bn
        use_batch = self.training and flat.shape[0] > 1
        normed = F.batch_norm(flat, bn.running_mean, bn.running_var, bn.weight, bn.bias, use_batch, bn.momentum, bn.eps)
        p = torch.sigmoid(normed).view_as(x)
        return p * x + (1 - p) * self.alpha * x


def dice_mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    """``Linear → (Dice → Dropout → Linear)*``: no activation after the last layer (the
    official ``FullyConnectedLayer``)."""
    layers: list[nn.Module] = [nn.Linear(sizes[0], sizes[1])]
    for width, nxt in zip(sizes[1:-1], sizes[2:]):
        layers += [Dice(width), nn.Dropout(dropout), nn.Linear(width, nxt)]
    return nn.Sequential(*layers)


class DINCTR(PointwiseMixin, SequentialRecommender):
    """Deep Interest Network with the official CoLLM composition.

    Three embedding tables of ``embedding_size`` each: user id, target item, history items (the
    history has its own table, as in the official code). The history is pooled by target
    attention — an MLP over ``[q, k, q − k, q·k]`` (``attention_hidden_size``, Dice) whose raw
    scores (no softmax, padding masked to 0) weight the history embeddings. The prediction MLP
    (``mlp_hidden_size: [200, 80, 1]``, Dice, dropout) reads ``[target, pooled history, user]``.

    For CoLLM the user slot is that same concatenation (it depends on the target) and the item
    slot is the target embedding repeated three times, both ``3 · embedding_size`` wide.
    """

    user_depends_on_target = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._init_pointwise(config, dataset)
        self.embedding_size = config["embedding_size"]
        sizes, attention = list(config["mlp_hidden_size"]), list(config["attention_hidden_size"])
        if not sizes or sizes[-1] != 1:
            raise InputError(f"mlp_hidden_size: {sizes} must end with the output width 1 (the paper's [200, 80, 1])")
        self.vector_dim = 3 * self.embedding_size
        self.user_embedding = nn.Embedding(dataset.num(self.USER_ID), self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.history_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.attention = nn.Sequential(dice_mlp([4 * self.embedding_size, *attention]), nn.Linear(attention[-1], 1))
        self.mlp = dice_mlp([self.vector_dim, *sizes], config["dropout_prob"])
        self.apply(xavier_normal_initialization)

    def pooled_history(self, target: torch.Tensor, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """Σ_t score(target, history_t) · history_t over the real (unpadded) positions."""
        history = self.history_embedding(item_seq)
        query = target.unsqueeze(1).expand_as(history)
        scores = self.attention(torch.cat([query, history, query - history, query * history], dim=-1)).squeeze(-1)
        real = torch.arange(item_seq.shape[1], device=item_seq.device) < item_seq_len.unsqueeze(1)
        return torch.einsum("bt,btd->bd", scores * real, history)

    def features(self, interaction) -> torch.Tensor:
        """``[target embedding, attention-pooled history, user embedding]``."""
        target = self.item_embedding(interaction[self.ITEM_ID])
        pooled = self.pooled_history(target, interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return torch.cat([target, pooled, self.user_embedding(interaction[self.USER_ID])], dim=-1)

    def user_item_vectors(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features(interaction), self.item_embedding(interaction[self.ITEM_ID]).repeat(1, 3)

    def logits(self, interaction) -> torch.Tensor:
        return self.mlp(self.features(interaction)).squeeze(-1)
