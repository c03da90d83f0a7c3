"""What every LLM recommender of the plugin (CoLLM and its ablations, A-LLMRec, CLLM4Rec) shares:
RecBole's labeled rows, the field names read once, the tunable parts (:class:`AdaptersMixin`) and a
one-line summary."""
from __future__ import annotations

import logging

import torch
from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import InputType, ModelType

from recbole_collm.errors import InputError
from recbole_collm.model.llm.adapters import AdaptersMixin
from recbole_collm.model.llm.precision import Precision


class LLMRecommender(AdaptersMixin, AbstractRecommender):
    """Labeled (context-type) rows with their per-row history; subclasses call
    ``super().__init__(config, dataset)`` first (which decodes the run's ``stages`` with
    :meth:`stage_plan`) and, once their parts are built, enter the first with :meth:`set_stage`; a
    stage's trainable parts are named by :meth:`_trainable_in` (CoLLM overrides :meth:`_unfreeze`). A model declares its stages once,
    here: the Config checks ``stage`` with :meth:`stage_plan` before anything is built."""

    stage_sequence: tuple[str, ...] = ()  # what ``stage: all`` trains, in order
    alone_stages: tuple[str, ...] = ()  # stages that only run alone, never part of ``all`` (CoLLM's one_step)
    uses_lora = False  # CoLLM and its ablations tune LoRA adapters (saved with the tunable parts)
    reads_cf_checkpoint = False  # built with its restored cf_checkpoint (recbole_collm.restore.build_model)
    trainer_name = "LLMTrainer"  # runs ``stages`` in order (recbole_collm.utils.get_trainer reads the name)

    type = ModelType.CONTEXT
    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        """The fields and settings every LLM model reads, once, as RecBole's models take
        ``super().__init__(config, dataset)``; the subclass then builds its parts and enters
        ``stages[0]`` with :meth:`set_stage`."""
        super().__init__()
        self.device = config["device"]
        self.USER_ID, self.ITEM_ID = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
        self.LABEL = config["LABEL_FIELD"]
        self.ITEM_SEQ = self.ITEM_ID + config["LIST_SUFFIX"]
        self.ITEM_SEQ_LEN = config["ITEM_LIST_LENGTH_FIELD"]
        self.n_items = dataset.item_num
        # the LLM's compute dtype (bf16 autocast where the hardware has it); the model applies it
        # to its LLM forward passes and keeps its scores and losses in float32, so training,
        # evaluation and the score/recommend commands all run in the same precision
        self.precision = Precision(config["llm_compute_dtype"], self.device, logging.getLogger(), config["llm_dtype"])
        self.item_word = config["domain_item"] or "item"  # what the prompts call an item
        self.stages = self.stage_plan(config["stage"])  # what LLMTrainer trains, in order
        self.stage = None  # the subclass enters ``stages[0]`` once its parts are built

    @staticmethod
    def _item_titles(dataset, need: str):
        """The dataset's item titles (row 0 the padding item's), or one error line saying what
        ``need``s them when the title column was not loaded."""
        titles = getattr(dataset, "item_titles", None)
        if titles is None:
            raise InputError(f"title_field: the dataset has no item titles; {need} (load_col)")
        return titles

    def histories(self, interaction, last: int | None = None) -> list[list[int]]:
        """Each row's history items, oldest first (the most recent ``last`` of them when given)."""
        seq, length = interaction[self.ITEM_SEQ].tolist(), interaction[self.ITEM_SEQ_LEN].tolist()
        return [s[max(0, n - last) : n] if last else s[:n] for s, n in zip(seq, length)]

    @property
    def base_llm(self):
        """The causal LM (under the peft wrapper, for a model with LoRA)."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    def vocabulary_logits(self, states: torch.Tensor) -> torch.Tensor:
        """The LM head over the whole vocabulary, in float32 whatever the compute dtype (a
        log-likelihood from bf16 logits would be off by ~0.1 nat on SmolLM2's logit scale)."""
        head = self.base_llm.get_output_embeddings()
        bias = None if getattr(head, "bias", None) is None else head.bias.float()
        return torch.nn.functional.linear(states.float(), head.weight.float(), bias)

    @classmethod
    def stage_plan(cls, stage: str) -> tuple[str, ...]:
        """The stages a run trains, in order — the one place ``stage`` is decoded: ``all`` =
        ``stage_sequence`` (each stage starts from the best weights of the one before), or one
        stage of it or of ``alone_stages``."""
        if stage == "all":
            return cls.stage_sequence
        if stage not in (*cls.stage_sequence, *cls.alone_stages):
            expected = ", ".join((*cls.stage_sequence, *cls.alone_stages, "all"))
            raise InputError(f"stage: '{stage}' is not one of {expected} (the {cls.__name__} stages)")
        return (stage,)

    def set_stage(self, stage: str) -> None:
        """Everything frozen, then what ``stage`` trains unfrozen."""
        stages = (*self.stage_sequence, *self.alone_stages)  # one stage, never "all"
        if stage not in stages:
            raise InputError(f"stage: set_stage takes one of {', '.join(stages)} (the {type(self).__name__} stages), not '{stage}'")
        self.stage = stage
        self.requires_grad_(False)
        self._unfreeze(stage)

    def _unfreeze(self, stage: str) -> None:
        for module in self._trainable_in(stage):
            module.requires_grad_(True)

    def _trainable_in(self, stage: str) -> list:
        raise NotImplementedError

    def zero_loss(self) -> torch.Tensor:
        """0 tied to every trainable parameter: the loss of a batch that holds nothing for the
        stage's objective (no positive row, no in-batch negative) still has a graph, so backward,
        gradient accumulation and DDP's all-reduce run alike on every batch."""
        return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0

    def __str__(self) -> str:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return f"{type(self).__name__}(stage={self.stage}, trainable={trainable:,} of {total:,} parameters)"
