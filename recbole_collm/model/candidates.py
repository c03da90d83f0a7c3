"""``full_sort_predict`` for the labeled models: each row's candidates scored with ``predict``."""
from __future__ import annotations

import torch
from recbole.data.interaction import Interaction

from recbole_collm.data.sampling import capped_items


class CandidateRankingMixin:
    """Full-sort ranking over the model's catalogue: every item, or the ``full_sort_items`` most
    popular train items — read once in ``__init__`` from the settings and the train split, by the
    same definition the full-sort loader uses (:func:`capped_items`). Items outside it get -inf.
    For CoLLM the repeated rows share their prompt prefix, so the prefix is encoded once per row,
    not once per item."""

    def _init_catalogue(self, config, dataset) -> None:
        self.capped = bool(config["full_sort_items"])
        self.register_buffer("catalogue", capped_items(config, dataset.train_item_count), persistent=False)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        items = self.catalogue
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
        if self.capped:
            keep = torch.zeros(self.n_items, dtype=torch.bool, device=scores.device)
            keep[self.catalogue] = True
            scores = scores.masked_fill(~keep, -torch.inf)
        return scores.view(-1)
