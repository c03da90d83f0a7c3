"""What every labeled (CTR-style) model of the plugin shares: BCE on the label, sigmoid scores."""
from __future__ import annotations

import torch
from recbole.utils import InputType, ModelType
from torch import nn

from recbole_collm.model.candidates import CandidateRankingMixin


class PointwiseMixin(CandidateRankingMixin):
    """Turns a model's ``logits(interaction)`` into RecBole's ``calculate_loss``/``predict``.

    The models are ``ModelType.CONTEXT``: RecBole then feeds them labeled rows (no negative
    sampling) and evaluates with value metrics, which is the CoLLM paper's protocol.
    """

    type = ModelType.CONTEXT
    input_type = InputType.POINTWISE

    def _init_pointwise(self, config, dataset) -> None:
        self._init_catalogue(config, dataset)
        self.LABEL = config["LABEL_FIELD"]
        self.bce = nn.BCEWithLogitsLoss()

    def logits(self, interaction) -> torch.Tensor:
        raise NotImplementedError

    def regularization(self, interaction) -> torch.Tensor | float:
        return 0.0

    def calculate_loss(self, interaction) -> torch.Tensor:
        return self.loss_and_logits(interaction)[0]

    def loss_and_logits(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss and the rows' logits it was computed from: the trainer reports the
        train rows' AUC from them without scoring the rows twice."""
        logits = self.logits(interaction)
        loss = self.bce(logits, interaction[self.LABEL].float())
        return loss + self.regularization(interaction), logits

    def predict(self, interaction) -> torch.Tensor:
        return torch.sigmoid(self.logits(interaction))
