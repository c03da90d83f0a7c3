"""CoLLM: an LLM scores "Yes" for a (user, item) prompt whose two ID slots hold collaborative
embeddings mapped into the LLM's token space (Zhang et al., 2023)."""
from __future__ import annotations

import os


import torch
from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import InputType, ModelType
from torch import nn

from recbole_collm.compat import load_checkpoint
from recbole_collm.errors import InputError, MissingInputError
from recbole_collm.llm.backbone import DTYPES, add_lora, load_llm
from recbole_collm.llm.cie import CheckpointSource, CollaborativeEncoder, ScratchMFSource
from recbole_collm.llm.prefix_scoring import PrefixScorer, splice, split_batch
from recbole_collm.llm.prefix_store import PrefixStore
from recbole_collm.llm.prompts import PromptBuilder
from recbole_collm.model.candidates import CandidateRankingMixin

__all__ = ["CoLLM", "splice"]

STAGES = ("lora", "cie", "one_step")


class CoLLM(CandidateRankingMixin, AbstractRecommender):
    """Two-step tuning (``stage``): ``lora`` trains LoRA on text-only prompts (TALLRec), ``cie``
    freezes LLM and LoRA and trains the CIE on full prompts, ``all`` runs both in sequence
    (see ``CoLLMTrainer``), ``one_step`` trains LoRA and CIE together (variant T3).

    Score: at the last prompt position, logit("Yes") − logit("No") (``score_mode: yes_no``), or the
    raw "Yes" logit (``score_mode: yes_logit``, the paper's loss); BCE-with-logits on the label.
    Only the last position's hidden state meets the two LM-head rows needed.
    """

    type = ModelType.CONTEXT
    input_type = InputType.POINTWISE
    uses_ids = True  # subclasses without the CIE (TALLRec, ICL) set False
    uses_lora = True

    def __init__(self, config, dataset):
        super().__init__()
        self.config = config
        self.device = config["device"]
        self.USER_ID, self.ITEM_ID = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
        self.LABEL = config["LABEL_FIELD"]
        self.ITEM_SEQ = self.ITEM_ID + config["LIST_SUFFIX"]
        self.ITEM_SEQ_LEN = config["ITEM_LIST_LENGTH_FIELD"]
        self.n_items = dataset.item_num
        if config["score_mode"] not in ("yes_no", "yes_logit"):
            raise InputError(f"score_mode: '{config['score_mode']}' is not one of yes_no, yes_logit")
        self.score_mode = config["score_mode"]
        # checked before the LLM loads
        store_mb = config["prefix_store_mb"] or 0
        if store_mb < 0:
            raise InputError(f"prefix_store_mb: {store_mb} must be 0 (no store) or a positive number of MB")
        if config["prefix_store_dtype"] not in DTYPES:
            raise InputError(f"prefix_store_dtype: '{config['prefix_store_dtype']}' is not one of {', '.join(DTYPES)}")
        self.prefix_store = PrefixStore(store_mb, DTYPES[config["prefix_store_dtype"]]) if store_mb else None

        llm, self.tokenizer = load_llm(config)
        self.llm = add_lora(llm, config) if self.uses_lora else llm
        hidden = self.base_llm.config.hidden_size
        titles = getattr(dataset, "item_titles", None)
        domain = config["domain_item"] or "item"
        limits = {"max_tokens": config["max_prompt_tokens"], "history_length": config["prompt_history_length"]}
        self.text_prompts = PromptBuilder(self.tokenizer, config["text_prompt_template"], titles, domain, with_ids=False, **limits)
        self.cie = None
        if self.uses_ids:
            self.full_prompts = PromptBuilder(self.tokenizer, config["prompt_template"], titles, domain, with_ids=True, **limits)
            self.cie = self._build_encoder(config, dataset, hidden)
        if config["lora_checkpoint"]:
            self.load_lora(config["lora_checkpoint"])
        self.bce = nn.BCEWithLogitsLoss()
        self.stage = None
        self.set_stage(config["stage"] if config["stage"] != "all" else "lora")

    # --- construction -------------------------------------------------------------------------
    def _build_encoder(self, config, dataset, hidden: int) -> nn.Module:
        """What fills the two ID slots: the CIE (CF vectors through an MLP)."""
        return CollaborativeEncoder(self._build_source(config, dataset), hidden, config["cie_hidden_factor"])

    def _build_source(self, config, dataset) -> nn.Module:
        if config["cie_checkpoint"] == "auto":
            from recbole_collm.cf_checkpoint import auto_cf_checkpoint

            # the run's config records the file it used: a reload reads the same CF model
            config["cie_checkpoint"] = auto_cf_checkpoint(config)
        if config["cie_checkpoint"]:
            return CheckpointSource(
                config["cie_checkpoint"], dataset, config["cie_min_overlap"], bool(config["tune_cf_model"]),
                history_length=config["cie_history_length"],
            )
        if config["cie_model"] == "MF":
            return ScratchMFSource(dataset, config["cie_embedding_size"])
        raise InputError("cie_checkpoint: not set; give a saved MF/LightGCN/SASRec/DIN checkpoint, auto, or set cie_model: MF")

    def load_lora(self, path: str) -> None:
        """Start from the LoRA weights of an earlier stage-1 run: its ``-adapter`` folder (peft
        format, safetensors, nothing unpickled) or its ``.pth`` checkpoint (fully unpickled: only
        files you trust)."""
        if os.path.isdir(path):
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            weights = os.path.join(path, "adapter_model.safetensors")
            if not os.path.isfile(weights):
                raise MissingInputError(f"lora_checkpoint: {weights} not found (expected a peft adapter folder)")
            result = set_peft_model_state_dict(self.llm, load_file(weights))
            missing = [k for k in result.missing_keys if "lora_" in k]
            if result.unexpected_keys or missing:
                raise InputError(f"lora_checkpoint: {path} does not match this LLM and lora_* settings")
            return
        state = load_checkpoint(path)["state_dict"]
        lora = {k: v for k, v in state.items() if "lora_" in k}
        own = {k for k in self.state_dict() if "lora_" in k}
        if not lora or set(lora) != own:
            raise InputError(f"lora_checkpoint: {path} holds no LoRA weights matching this LLM and lora_* settings")
        super().load_state_dict(lora, strict=False)

    @property
    def base_llm(self):
        """The causal LM under the peft wrapper (or the LLM itself)."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    # --- stages -------------------------------------------------------------------------------
    def set_stage(self, stage: str) -> None:
        """Choose the prompts and which parameters train (everything else is frozen)."""
        if stage not in STAGES:
            raise InputError(f"stage: '{stage}' is not one of lora, cie, all, one_step")
        if stage in ("cie", "one_step") and not self.uses_ids:
            raise InputError(f"stage: '{stage}' needs the CIE; {type(self).__name__} has none")
        self.stage = stage
        self.requires_grad_(False)
        if stage in ("lora", "one_step") and self.uses_lora:
            for name, param in self.llm.named_parameters():
                if "lora_" in name:
                    param.requires_grad_(True)
        if stage in ("cie", "one_step"):
            self.cie.set_trainable(bool(self.config["tune_cf_model"]))

    @property
    def prompts(self) -> PromptBuilder:
        return self.full_prompts if self.stage in ("cie", "one_step") else self.text_prompts

    # --- scoring ------------------------------------------------------------------------------
    @property
    def uses_prefix_cache(self) -> bool:
        """``prefix_cache: True`` and a decoder whose cache is a plain (non-sliding) one."""
        layer_types = getattr(self.base_llm.config, "layer_types", None) or []
        return bool(self.config["prefix_cache"]) and all("sliding" not in t for t in layer_types)

    def logits(self, interaction) -> torch.Tensor:
        """Per-row score; shared-prefix path unless ``prefix_cache: False`` (the plain reference)."""
        hidden = self._shared_prefix_hidden(interaction) if self.uses_prefix_cache else self._plain_hidden(interaction)
        return self._answer_score(hidden)

    def _plain_hidden(self, interaction) -> torch.Tensor:
        """Every row's full prompt, left-padded, ``llm_batch_size`` rows per forward, in order."""
        size = max(1, int(self.config["llm_batch_size"]))
        if len(interaction) > size:
            return torch.cat([self._plain_hidden(interaction[i : i + size]) for i in range(0, len(interaction), size)])
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
        scorer = PrefixScorer(
            self.base_llm.get_decoder(),
            self.base_llm.get_input_embeddings(),
            prompts.placeholder_id,
            self.config["prefix_batch_size"],
            self.config["llm_batch_size"],
            store=self.prefix_store,
        )
        return scorer.hidden(split, user_vec, item_vec, prefix_grad=llm_trains)

    def _answer_score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Only the two LM-head rows needed ("Yes", "No") meet the last hidden state."""
        prompts = self.prompts
        head = self.base_llm.get_output_embeddings()
        rows = head.weight[[prompts.yes_id, prompts.no_id]]
        out = hidden.to(rows.dtype) @ rows.T
        if getattr(head, "bias", None) is not None:
            out = out + head.bias[[prompts.yes_id, prompts.no_id]]
        cap = getattr(self.base_llm.config, "final_logit_softcapping", None)
        if cap:
            out = torch.tanh(out / cap) * cap
        out = out.float()
        return out[:, 0] - out[:, 1] if self.score_mode == "yes_no" else out[:, 0]

    def calculate_loss(self, interaction) -> torch.Tensor:
        return self.bce(self.logits(interaction), interaction[self.LABEL].float())

    def predict(self, interaction) -> torch.Tensor:
        return torch.sigmoid(self.logits(interaction))

    # --- small checkpoints --------------------------------------------------------------------
    def state_dict(self, *args, **kwargs):
        """Only what training can change (LoRA and CIE): a checkpoint never holds the LLM."""
        full = super().state_dict(*args, **kwargs)
        return type(full)((k, v) for k, v in full.items() if _is_tunable_key(k))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        expected = set(self.state_dict())
        missing, unexpected = expected - set(state_dict), set(state_dict) - expected
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"CoLLM checkpoint does not match the model: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
            )
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    def __str__(self) -> str:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return f"{type(self).__name__}(stage={self.stage}, trainable={trainable:,} of {total:,} parameters)"


def _is_tunable_key(key: str) -> bool:
    return "lora_" in key or key.startswith("cie.")
