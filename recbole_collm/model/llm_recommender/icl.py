"""ICL: zero-shot scoring with the untuned LLM (the paper's in-context baseline)."""
from recbole_collm.model.llm_recommender.collm import CoLLM


class ICL(CoLLM):
    """Text-only prompts, nothing trained: no LoRA, no CIE."""

    uses_ids = False
    reads_cf_checkpoint = False
    stage_sequence = ("lora",)  # no ID slots: the first step only
    alone_stages = ()
    uses_lora = False
