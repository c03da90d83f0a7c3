"""``full_sort_predict`` for the labeled models: each row's candidates scored with ``predict``."""
from __future__ import annotations

import torch
from recbole.data.interaction import Interaction


class CandidateRankingMixin:
    """Scores every row against the catalogue the trainer set from the eval loader
    (``full_sort_items``; all items when unset). Items outside it get -inf. For CoLLM the repeated
    rows share their prompt prefix, so the prefix is encoded once per row, not once per item."""

    full_sort_items: torch.Tensor | None = None

    def full_sort_predict(self, interaction) -> torch.Tensor:
        items = self.full_sort_items
        if items is None:
            items = torch.arange(1, self.n_items)
        items = items.to(interaction[self.ITEM_ID].device)
        rows, count = len(interaction), len(items)
        batch = interaction.repeat_interleave(count)
        batch.update(Interaction({self.ITEM_ID: items.repeat(rows)}))
        scores = self.predict(batch).view(rows, count)
        out = torch.full((rows, self.n_items), -torch.inf, device=scores.device)
        out[:, items] = scores.to(out.dtype)
        return out.view(-1)

    def mask_to_catalogue(self, scores: torch.Tensor) -> torch.Tensor:
        """For models that score all items at once: items outside the catalogue get -inf."""
        scores = scores.view(-1, self.n_items)
        if self.full_sort_items is not None:
            keep = torch.zeros(self.n_items, dtype=torch.bool, device=scores.device)
            keep[self.full_sort_items.to(scores.device)] = True
            scores = scores.masked_fill(~keep, -torch.inf)
        return scores.view(-1)
