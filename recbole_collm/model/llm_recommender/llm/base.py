"""What every LLM recommender of the plugin (CoLLM and its ablations, A-LLMRec, CLLM4Rec) shares:
RecBole's labeled rows, the field names read once, the tunable parts (:class:`AdaptersMixin`) and a
one-line summary."""
from __future__ import annotations

from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import InputType, ModelType

from recbole_collm.errors import InputError
from recbole_collm.model.llm_recommender.llm.adapters import AdaptersMixin


def stage_sequence(stage: str, stages: tuple[str, ...], model: str) -> tuple[str, ...]:
    """The stages a run of a sequential two-stage model trains: ``all`` = ``stages`` in order, or
    one of them (CoLLM has its own plan: :func:`recbole_collm.model.llm_recommender.collm.stage_plan`)."""
    if stage == "all":
        return stages
    if stage not in stages:
        raise InputError(f"stage: '{stage}' is not a {model} stage; expected {', '.join(stages)} or all")
    return (stage,)


class LLMRecommender(AdaptersMixin, AbstractRecommender):
    """Labeled (context-type) rows with their per-row history; subclasses call :meth:`_init_fields`
    first in ``__init__`` and set ``stages`` and ``stage``."""

    type = ModelType.CONTEXT
    input_type = InputType.POINTWISE

    def _init_fields(self, config, dataset) -> None:
        self.device = config["device"]
        self.USER_ID, self.ITEM_ID = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
        self.LABEL = config["LABEL_FIELD"]
        self.ITEM_SEQ = self.ITEM_ID + config["LIST_SUFFIX"]
        self.ITEM_SEQ_LEN = config["ITEM_LIST_LENGTH_FIELD"]
        self.n_items = dataset.item_num

    def __str__(self) -> str:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return f"{type(self).__name__}(stage={self.stage}, trainable={trainable:,} of {total:,} parameters)"
