"""DIN over the positive history (RecBole's DIN, fed the plugin's labeled rows)."""
from __future__ import annotations

import torch
from recbole.model.sequential_recommender.din import DIN as RecBoleDIN
from recbole.utils import ModelType

from recbole_collm.model.candidates import CandidateRankingMixin


class DIN(CandidateRankingMixin, RecBoleDIN):
    """RecBole's DIN is already pointwise (BCE on the label, sigmoid scores). Declared a context
    model so that RecBole feeds it labeled rows whose ``item_id_list`` is the user's last positive
    items across splits (the paper's protocol), not RecBole's own sequence augmentation."""

    type = ModelType.CONTEXT

    @property
    def vector_dim(self) -> int:
        return self.dnn_list[0] // 3

    def user_item_vectors(self, interaction):
        """User = the target-attention pooled history, item = the target's embedding (how the
        paper folds DIN into CoLLM's user side)."""
        item_seq = interaction[self.ITEM_SEQ]
        next_items = interaction[self.POS_ITEM_ID]
        max_length = item_seq.shape[1]
        sparse, dense = self.embedding_layer(interaction[self.USER_ID], torch.cat((item_seq, next_items.unsqueeze(1)), dim=-1))
        table = [t for t in (sparse["item"], dense["item"]) if t is not None]
        table = torch.cat(table, dim=-2)
        table = table.view(table.shape[:-2] + (table.shape[-2] * table.shape[-1],))
        history, target = table.split([max_length, 1], dim=1)
        target = target.squeeze(1)
        user = self.attention(target, history, interaction[self.ITEM_SEQ_LEN]).squeeze(1)
        return user, target
