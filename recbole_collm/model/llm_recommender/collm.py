"""CoLLM: an LLM scores "Yes" for a (user, item) prompt whose two ID slots hold collaborative
embeddings mapped into the LLM's token space (Zhang et al., 2023)."""
from __future__ import annotations

import torch
from torch import nn

from recbole_collm.errors import InputError
from recbole_collm.model.abstract_recommender import LLMRecommender
from recbole_collm.model.cf_source import NOT_HANDED, CheckpointSource, ScratchMFSource
from recbole_collm.model.llm.backbone import add_lora, load_llm
from recbole_collm.model.llm.batching import splice, split_batch
from recbole_collm.model.llm.lower_layers import LowerLayerCache
from recbole_collm.model.llm.prefix_store import PrefixStore
from recbole_collm.model.llm.projector import CollaborativeEncoder
from recbole_collm.model.llm.prompts import PromptBuilder
from recbole_collm.model.llm.shared_prefix import SharedPrefixEncoder
from recbole_collm.model.pointwise import PointwiseMixin
from recbole_collm.settings import CF_SOURCES

__all__ = ["CoLLM", "splice"]

class CoLLM(PointwiseMixin, LLMRecommender):
    """Two-step tuning (``stage``): ``lora`` trains LoRA on text-only prompts (TALLRec), ``cie``
    freezes LLM and LoRA and trains the CIE on full prompts, ``all`` runs both in sequence
    (``LLMTrainer`` runs them), ``one_step`` trains LoRA and CIE together (variant T3).

    Score: at the last prompt position, logit("Yes") − logit("No") (``score_mode: yes_no``), or the
    raw "Yes" logit (``score_mode: yes_logit``, the paper's loss); BCE-with-logits on the label.
    Only the last position's hidden state meets the two LM-head rows needed.
    """

    uses_ids = True  # subclasses without the CIE (TALLRec, ICL) set False
    uses_lora = True
    reads_cf_checkpoint = True  # built with its restored cf_checkpoint (recbole_collm.restore.build_model)
    cf_models = CF_SOURCES  # the checkpoints its CIE reads
    # the paper's two steps (LoRA on text prompts, then the CIE with the rest frozen), or both at once
    stage_sequence = ("lora", "cie")
    alone_stages = ("one_step",)
    reports_stages = True  # a run's test result is compared with its LoRA stage's (LLMTrainer.evaluate_stages)

    def __init__(self, config, dataset, source: CheckpointSource | None = None):
        """``source``: the restored, aligned ``cf_checkpoint`` (the runner's
        :func:`recbole_collm.restore.build_model` hands it over); without a checkpoint, CoLLM
        trains an MF table of its own (T2)."""
        super().__init__(config, dataset)
        self._init_pointwise(config, dataset)  # BCE on the label, sigmoid scores, the full-sort catalogue
        # every setting read once, here (validated when the Config was built)
        self.score_mode = config["score_mode"]
        self.share_prefixes = bool(config["share_prefixes"])
        self.prefix_batch_size = int(config["prefix_batch_size"])
        self.llm_batch_size = int(config["llm_batch_size"])
        self.tune_cf_model = bool(config["tune_cf_model"])
        store_mb = config["prefix_store_mb"] or 0
        self.prefix_store = PrefixStore(store_mb, self.precision.store_dtype(config["prefix_store_dtype"])) if store_mb else None
        # the collaborative source first: a bad checkpoint is reported before the LLM loads
        source = self._build_source(config, dataset, source) if self.uses_ids else None

        llm, self.tokenizer = load_llm(config, self.precision.weights_dtype, self.precision.linear_dtype)
        self.llm = add_lora(llm, config) if self.uses_lora else llm
        hidden = self.base_llm.config.hidden_size
        titles = getattr(dataset, "item_titles", None)
        limits = {"max_tokens": config["max_prompt_tokens"], "history_length": config["prompt_history_length"]}
        self.text_prompts = PromptBuilder(self.tokenizer, config["text_prompt_template"], titles, self.item_word, with_ids=False, **limits)
        self.cie = None
        if self.uses_ids:
            self.full_prompts = PromptBuilder(self.tokenizer, config["prompt_template"], titles, self.item_word, with_ids=True, **limits)
            self.cie = self._build_encoder(config, dataset, hidden, source)
        self.lower = self._build_lower_cache(config) if self.uses_lora else None
        if config["lora_checkpoint"]:
            self.load_lora(config["lora_checkpoint"])
        self.set_stage(self.stages[0])

    # --- construction -------------------------------------------------------------------------
    def _build_encoder(self, config, dataset, hidden: int, source: nn.Module | None) -> nn.Module:
        """What fills the two ID slots: the CIE (CF vectors through an MLP)."""
        return CollaborativeEncoder(source, hidden, config["cie_hidden_factor"])

    def _build_lower_cache(self, config) -> LowerLayerCache | None:
        """With LoRA on the top ``lora_layers`` only, the text prompts' lower layers run once per
        prompt (checked against the whole decoder on one small batch)."""
        layers = config["lora_layers"]
        n_layers = self.base_llm.config.num_hidden_layers
        if not layers or layers >= n_layers:
            return None
        cache = LowerLayerCache(self.base_llm.get_decoder(), self.base_llm.get_input_embeddings(), n_layers - layers,
                                config["lower_store_mb"] or 0, self.precision.dtype)
        probe = self.text_prompts.batch(torch.tensor([[1, 2], [1, 0]]), torch.tensor([2, 1]), torch.tensor([3, 3]))
        with self.precision.autocast():
            cache.check(probe["input_ids"].to(self.device), probe["attention_mask"].to(self.device),
                        probe["position_ids"].to(self.device))
        return cache

    def _build_source(self, config, dataset, handed: CheckpointSource | None) -> nn.Module | None:
        if handed is not None:
            handed.set_tuned(self.tune_cf_model)
            return handed
        if config["cf_checkpoint"]:
            raise InputError(NOT_HANDED.format(model=type(self).__name__))
        if config["cf_model"] == "MF":
            return ScratchMFSource(dataset, config["cie_embedding_size"])
        raise InputError(f"cf_checkpoint: not set; give a saved checkpoint of {'/'.join(CF_SOURCES)}, auto, or set cf_model: MF")

    # --- stages -------------------------------------------------------------------------------
    def _unfreeze(self, stage: str) -> None:
        """``lora`` and ``one_step`` train the LoRA weights, ``cie`` and ``one_step`` the CIE (and
        the CF model with ``tune_cf_model``); the stage also chooses the prompts (:attr:`prompts`)."""
        if stage in ("lora", "one_step") and self.uses_lora:
            for name, param in self.llm.named_parameters():
                if "lora_" in name:
                    param.requires_grad_(True)
        if stage in ("cie", "one_step"):
            self.cie.set_trainable(self.tune_cf_model)

    @property
    def prompts(self) -> PromptBuilder:
        return self.full_prompts if self.stage in ("cie", "one_step") else self.text_prompts

    # --- scoring ------------------------------------------------------------------------------
    @property
    def uses_shared_prefixes(self) -> bool:
        """``share_prefixes: True`` and a decoder whose cache is a plain (non-sliding) one."""
        layer_types = getattr(self.base_llm.config, "layer_types", None) or []
        return self.share_prefixes and all("sliding" not in t for t in layer_types)

    def logits(self, interaction) -> torch.Tensor:
        """Per-row score; shared-prefix path unless ``share_prefixes: False`` (the plain reference).
        The LLM runs in the compute dtype, the score in float32."""
        with self.precision.autocast():
            if self.lower is not None and not self.prompts.with_ids:
                hidden = self._lower_cached_hidden(interaction)
            elif self.uses_shared_prefixes:
                hidden = self._shared_prefix_hidden(interaction)
            else:
                hidden = self.plain_hidden(interaction)
        return self.answer_score(hidden)

    def _lower_cached_hidden(self, interaction) -> torch.Tensor:
        """Text prompts with LoRA on the top layers only: the layers below run once per prompt
        (:class:`LowerLayerCache`), ``llm_batch_size`` rows per forward."""
        size = self.llm_batch_size
        if len(interaction) > size:
            return torch.cat([self._lower_cached_hidden(interaction[i : i + size]) for i in range(0, len(interaction), size)])
        batch = self.prompts.batch(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], interaction[self.ITEM_ID])
        return self.lower.hidden(*(batch[k].to(self.device) for k in ("input_ids", "attention_mask", "position_ids")))

    def plain_hidden(self, interaction) -> torch.Tensor:
        """Every row's full prompt, left-padded, ``llm_batch_size`` rows per forward, in order."""
        size = self.llm_batch_size
        if len(interaction) > size:
            return torch.cat([self.plain_hidden(interaction[i : i + size]) for i in range(0, len(interaction), size)])
        prompts = self.prompts
        batch = prompts.batch(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], interaction[self.ITEM_ID])
        batch = {k: v.to(self.device) for k, v in batch.items()}
        embeds = self.base_llm.get_input_embeddings()(batch["input_ids"])
        if prompts.with_ids:
            user_vec, item_vec = self.cie(interaction)
            embeds = splice(embeds, batch["user_pos"], user_vec.to(embeds.dtype))
            embeds = splice(embeds, batch["item_pos"], item_vec.to(embeds.dtype))
        decoder = self.base_llm.get_decoder()
        return decoder(
            inputs_embeds=embeds, attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]
        ).last_hidden_state[:, -1]

    def _shared_prefix_hidden(self, interaction) -> torch.Tensor:
        """Each distinct prefix once; prefixes without autograd when no LLM weight trains (the
        CIE stage): nothing before <UserID> depends on a trainable parameter then."""
        prompts = self.prompts
        # scoring only (no autograd) and a user vector blind to the target: the prefix can run
        # through the <UserID> slot, shared by the rows of one user (all candidates in ranking);
        # with a store, the part before the slot is stored and reused by every later pass
        through_user = prompts.with_ids and not torch.is_grad_enabled() and not self.cie.user_depends_on_target
        split = split_batch(
            prompts, interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], interaction[self.ITEM_ID],
            interaction[self.USER_ID] if through_user else None,
        )
        user_vec = item_vec = None
        if prompts.with_ids:
            user_vec, item_vec = self.cie(interaction)
        llm_trains = any(p.requires_grad for p in self.llm.parameters())
        if self.prefix_store is not None:
            self.prefix_store.check_weights(self.llm)
        encoder = SharedPrefixEncoder(
            self.base_llm.get_decoder(),
            self.base_llm.get_input_embeddings(),
            prompts.placeholder_id,
            self.prefix_batch_size,
            self.llm_batch_size,
            store=self.prefix_store,
            compute_dtype=self.precision.dtype if self.precision.half else None,
        )
        return encoder.hidden(split, user_vec, item_vec, prefix_grad=llm_trains)

    def answer_score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Only the two LM-head rows needed ("Yes", "No") meet the last hidden state."""
        prompts = self.prompts
        head = self.base_llm.get_output_embeddings()
        rows = head.weight[[prompts.yes_id, prompts.no_id]]
        out = hidden.float() @ rows.float().T
        if getattr(head, "bias", None) is not None:
            out = out + head.bias[[prompts.yes_id, prompts.no_id]].float()
        cap = getattr(self.base_llm.config, "final_logit_softcapping", None)
        if cap:
            out = torch.tanh(out / cap) * cap
        return out[:, 0] - out[:, 1] if self.score_mode == "yes_no" else out[:, 0]
