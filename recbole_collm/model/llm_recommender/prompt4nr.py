"""Prompt4NR: a discrete template with continuous prompt tokens, the LLM tuned with LoRA (Zhang &
Wang, SIGIR 2023, as the CoLLM paper extends it to an LLM)."""
from __future__ import annotations

from torch import nn

from recbole_collm.model.llm.projector import ContinuousPrompt
from recbole_collm.model.llm_recommender.collm import CoLLM


class Prompt4NR(CoLLM):
    """CoLLM's prompts, scoring and trainer; the template's two slots hold trainable continuous
    prompt tokens shared by every row (:class:`ContinuousPrompt`), trained together with LoRA in
    one stage (``one_step``), with TALLRec's LoRA settings. No collaborative model: what it knows
    of a user is the history titles in the text, as TALLRec."""

    reads_cf_checkpoint = False
    stage_sequence = ("one_step",)
    alone_stages = ()
    reports_stages = False  # one stage: nothing to compare a run with

    def _build_source(self, config, dataset, handed: None) -> None:
        return None  # the slots hold prompt tokens, not collaborative vectors

    def _build_encoder(self, config, dataset, hidden: int, source: None) -> nn.Module:
        std = float(self.base_llm.get_input_embeddings().weight.detach().float().std())
        return ContinuousPrompt(hidden, std)
