"""UIToken: CoLLM with user/item ID tokens in place of the CIE (the paper's "w/ UI-token" ablation)."""
from __future__ import annotations

from torch import nn

from recbole_collm.model.llm.projector import IDTokenEmbedding
from recbole_collm.model.llm_recommender.collm import CoLLM


class UIToken(CoLLM):
    """Same prompts, stages and trainer as CoLLM; the two ID slots hold trainable per-user and
    per-item token embeddings (learned from the labels alone) instead of CF vectors through
    the CIE. ``stage: cie`` trains the token rows with LLM and LoRA frozen."""

    reads_cf_checkpoint = False

    def _build_source(self, config, dataset, handed: None) -> None:
        return None  # no collaborative model: the slots' rows are learned from the labels

    def _build_encoder(self, config, dataset, hidden: int, source: None) -> nn.Module:
        std = float(self.base_llm.get_input_embeddings().weight.detach().float().std())
        return IDTokenEmbedding(dataset, hidden, std)
