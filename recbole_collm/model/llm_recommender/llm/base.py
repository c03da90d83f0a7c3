"""What every LLM recommender of the plugin (CoLLM and its ablations, A-LLMRec, CLLM4Rec) shares:
RecBole's labeled rows, the field names read once, the tunable parts (:class:`AdaptersMixin`) and a
one-line summary."""
from __future__ import annotations

from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import InputType, ModelType

from recbole_collm.model.llm_recommender.llm.adapters import AdaptersMixin


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
