"""TALLRec: CoLLM's first step alone — LoRA on text-only prompts, no collaborative slots."""
from recbole_collm.model.llm_recommender.collm import CoLLM


class TALLRec(CoLLM):
    """Text-only prompts, LoRA trained (``stage: lora``); no CIE."""

    uses_ids = False
    reads_cf_checkpoint = False
    stage_sequence = ("lora",)  # no ID slots: the first step only
    alone_stages = ()
