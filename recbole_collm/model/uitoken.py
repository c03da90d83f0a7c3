"""UIToken: CoLLM with user/item ID tokens in place of the CIE (the paper's "w/ UI-token" ablation)."""
from __future__ import annotations

from torch import nn

from recbole_collm.llm.cie import IDTokenEmbedding
from recbole_collm.model.collm import CoLLM


class UIToken(CoLLM):
    """Same prompts, stages and trainer as CoLLM; the two ID slots hold trainable per-user and
    per-item token embeddings (learned from the labels alone) instead of CF vectors through
    the CIE. ``stage: cie`` trains the token rows with LLM and LoRA frozen."""

    def _build_encoder(self, config, dataset, hidden: int) -> nn.Module:
        std = float(self.base_llm.get_input_embeddings().weight.detach().float().std())
        return IDTokenEmbedding(dataset, hidden, std)
