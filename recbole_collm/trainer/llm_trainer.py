"""The trainer of the LLM recommenders (CoLLM, TALLRec, ICL, UI-token, A-LLMRec, CLLM4Rec): RecBole's
fit loop per stage, over the trainable parameters only, with the model's stage plan (``model.stages``)."""
from __future__ import annotations

import itertools
import math
import os

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from sklearn.metrics import roc_auc_score
from torch.nn.utils.clip_grad import clip_grad_norm_
from tqdm import tqdm

from recbole_collm.settings import given_settings, optional_positive
from recbole_collm.trainer.trainer import PluginTrainerMixin


class LLMTrainer(PluginTrainerMixin, Trainer):
    """RecBole's fit loop (early stopping on ``valid_metric``) for the LLM models, over the
    trainable parameters only, with RecBole's ``learner`` (AdamW by default), linear warmup +
    cosine decay, gradient accumulation, fp16 loss scaling (``enable_scaler``, for
    ``llm_compute_dtype: float16``: the model applies its own precision) and the model's stages in order (``model.stages``, decoded from
    ``stage`` by the model): for CoLLM ``stage: all`` = the LoRA stage, then the CIE stage from the
    best LoRA weights; A-LLMRec: align, project; CLLM4Rec: pretrain, finetune.

    A stage may have a learning rate and an epoch count of its own (``<stage>_learning_rate``,
    ``<stage>_epochs``, e.g. ``cie_learning_rate``; empty or absent = ``learning_rate``,
    ``epochs``): CoLLM's CIE stage trains a small MLP over stored prefixes, so it affords more
    epochs and a larger step than the LoRA stage. A stage may see fewer rows per epoch
    (``<stage>_train_rows``; CoLLM's ``lora_train_rows``: the LoRA stage is the expensive one)."""

    def __init__(self, config, model):
        self.stages = tuple(model.stages)
        # a stage may see only the first N rows of each epoch's shuffle (``<stage>_train_rows``, e.g.
        # lora_train_rows): the expensive one, while a cheap one (A-LLMRec's align) sees every row
        self.stage_train_rows = {s: optional_positive(config, f"{s}_train_rows", int) for s in self.stages}
        self.stage_learning_rate = {
            s: optional_positive(config, f"{s}_learning_rate", float) or float(config["learning_rate"]) for s in self.stages
        }
        self.stage_epochs = {s: optional_positive(config, f"{s}_epochs", int) or int(config["epochs"]) for s in self.stages}
        self.accumulation = max(1, int(config["gradient_accumulation_steps"] or 1))
        self.warmup_steps = int(config["warmup_steps"] or 0)
        # the cosine schedule ends at this fraction of the stage's learning rate (official CoLLM:
        # 8e-5 of 1e-3), so the epochs that early stopping lets run still learn
        self.min_lr_ratio = float(config["min_lr_ratio"] or 0.0)
        self.stage_best: dict[str, tuple[float, dict | None]] = {}  # each finished stage's best validation
        # False: a multi-stage run keeps its last stage's weights even when an earlier stage validated better
        self.keep_best_stage = config["keep_best_stage"] is not False
        # per epoch: stage, epoch, the train rows' AUC, mean loss and label entropy, the validation result
        self.history: list[dict] = []
        self.train_batch_size = int(config["train_batch_size"])
        self.eval_step_setting = int(config["eval_step"])
        self._stage_at = 0  # index in self.stages of the stage being trained
        self._final_file = None  # where the last stage's checkpoint goes (earlier ones: -<stage>)
        self._pending_scheduler = None
        self.scheduler = None
        super().__init__(config, model)
        # the model computes in its own precision (``llm_compute_dtype``); only fp16 needs loss scaling
        fp16 = getattr(getattr(model, "precision", None), "dtype", None) == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=bool(self.enable_scaler and fp16))

    def _build_optimizer(self, **kwargs):
        """RecBole's ``learner`` over the trainable parameters, at the stage's learning rate."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            return None  # ICL: nothing to train
        lr = self.stage_learning_rate.get(self.model.stage, self.learning_rate)
        return super()._build_optimizer(params=params, learning_rate=lr, **kwargs)

    # --- stages ---------------------------------------------------------------------------------
    def stage_file(self, at: int) -> str:
        """The last stage writes the run's checkpoint; an earlier one ``<stem>-<stage>.pth``."""
        if at == len(self.stages) - 1:
            return self._final_file
        stem, ext = os.path.splitext(self._final_file)
        return f"{stem}-{self.stages[at]}{ext}"

    def enter_stage(self, at: int) -> None:
        """Switch the model to stage ``at`` with a fresh optimizer and early-stopping state."""
        self._stage_at = at
        self.logger.info(set_color(f"Stage {at + 1} of {len(self.stages)}: {self.stages[at]}", "green"))
        self.model.set_stage(self.stages[at])
        if self.distributed:  # the wrapper reduces the parameters that trained when it was built
            self._wrap_distributed()
        self.start_epoch, self.cur_step = 0, 0
        self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf
        self.best_valid_result = None
        self.optimizer = self._build_optimizer()

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None,
            on_validation=None):
        """Each remaining stage in turn; a later stage starts from the best weights of the one
        before. A resumed run starts in the stage its checkpoint was saved in."""
        if self._final_file is None:  # a fresh run (a resumed one knows it from its checkpoint)
            self._final_file = self.saved_model_file
        result = None
        for at in range(self._stage_at, len(self.stages)):
            if at > self._stage_at:
                if saved:
                    self._load_model_file(self.saved_model_file)
                self.enter_stage(at)
            self.saved_model_file = self.stage_file(at)
            result = self._fit_stage(train_data, valid_data, verbose, saved, show_progress, callback_fn, on_validation)
            self.stage_best[self.stages[at]] = (self.best_valid_score, self.best_valid_result)
        if saved and valid_data and len(self.stages) > 1 and self.keep_best_stage:
            result = self.restore_best_stage() or result
        return result

    def restore_best_stage(self) -> tuple | None:
        """Validation decides which stage's weights the run keeps: when an earlier stage validated
        better than the last one's best epoch (CoLLM's LoRA stage against its CIE stage), its
        checkpoint becomes the run's, so the run never ends below a stage it went through."""
        last = self.stages[-1]
        better = (lambda a, b: a > b) if self.valid_metric_bigger else (lambda a, b: a < b)
        best = last
        for stage in self.stages[:-1]:
            if stage in self.stage_best and better(self.stage_best[stage][0], self.stage_best[best][0]):
                best = stage
        scores = ", ".join(f"{s} {self.stage_best[s][0]:.4f}" for s in self.stages if s in self.stage_best)
        if best == last:
            self.logger.info(set_color(f"Keeping the {last} stage's weights (best {self.valid_metric} by stage: {scores})", "green"))
            return None
        self.logger.info(set_color(f"Keeping the {best} stage's weights: its {self.valid_metric} beats the {last} stage's "
                                   f"best epoch ({scores})", "yellow"))
        self._load_model_file(self.stage_file(self.stages.index(best)))  # sets the model to that stage
        self.best_valid_score, self.best_valid_result = self.stage_best[best]
        self._save_checkpoint(-1, verbose=False)
        return self.best_valid_score, self.best_valid_result

    def _fit_stage(self, train_data, valid_data, verbose, saved, show_progress, callback_fn, on_validation):
        self.epochs = self.stage_epochs[self.model.stage]
        self.eval_step = min(self.eval_step_setting, self.epochs)
        if self.optimizer is None:
            if saved:
                self._save_checkpoint(-1, verbose=verbose)
            self.eval_collector.data_collect(train_data)
            return self.best_valid_score, None
        from transformers import get_cosine_with_min_lr_schedule_with_warmup

        # planned over the stage's epochs (early stopping may end it sooner); warmup at most a
        # tenth of the planned steps, so a short run is not all warmup
        steps = max(1, self.epochs * math.ceil(self._epoch_batches(train_data) / self.accumulation))
        self.scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            self.optimizer, min(self.warmup_steps, steps // 10), steps, min_lr_rate=self.min_lr_ratio)
        if self._pending_scheduler is not None:
            self.scheduler.load_state_dict(self._pending_scheduler)
            # building the scheduler reset the learning rates to step 0's; put back the saved ones
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr
            self._pending_scheduler = None
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn, on_validation)

    def _resume_state(self) -> dict:
        state = super()._resume_state()
        state.update(stage=self.model.stage, final_file=self._final_file, stage_best=self.stage_best)
        return state

    def _restore_stage(self, checkpoint: dict) -> None:
        self._final_file = checkpoint.get("final_file")
        self.stage_best = dict(checkpoint.get("stage_best") or {})
        stage = checkpoint.get("stage")
        if stage in self.stages and self.stages.index(stage) > 0:
            self.enter_stage(self.stages.index(stage))

    # --- one epoch ------------------------------------------------------------------------------
    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._current_epoch = epoch_idx
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        total_loss = 0.0
        n_batches = self._epoch_batches(train_data)
        batches = itertools.islice(train_data, n_batches)
        if show_progress:
            batches = tqdm(batches, total=n_batches, ncols=100, desc=f"Train {epoch_idx:>4}")
        if self.distributed and train_data.shuffle:
            train_data.sampler.set_epoch(epoch_idx)
        self.optimizer.zero_grad()
        seen = _TrainRows(self.model)
        for batch_idx, interaction in enumerate(batches):
            interaction = interaction.to(self.device)
            sync = 0
            if self.distributed:  # RecBole's way: every trainable parameter's gradient is averaged
                self.set_reduce_hook()
                sync = self.sync_grad_loss()
            loss = seen.loss(interaction) + sync
            self._check_nan(loss, interaction)
            self.scaler.scale(loss / self.accumulation).backward()
            total_loss += loss.item()
            if (batch_idx + 1) % self.accumulation == 0 or batch_idx + 1 == n_batches:
                self.scaler.unscale_(self.optimizer)
                if self.clip_grad_norm:
                    clip_grad_norm_(params, **self.clip_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self.optimizer.zero_grad()
            if show_progress:
                batches.set_postfix(loss=f"{loss.item():.4f}")
        self.history.append({"stage": self.model.stage, "epoch": epoch_idx, **seen.record()})
        if seen.labels:
            self.logger.info(f"epoch {epoch_idx} ({self.model.stage}) train rows: {seen.summary()}")
        self._log_prefix_store()
        return total_loss

    def _epoch_batches(self, train_data) -> int:
        """Batches per epoch: all of them, except under ``<stage>_train_rows`` (the first batches
        of the epoch's seeded shuffle, different rows each epoch)."""
        rows = self.stage_train_rows.get(self.model.stage)
        if rows:
            return min(len(train_data), math.ceil(rows / self.train_batch_size))
        return len(train_data)

    # --- evaluation and checkpoints -------------------------------------------------------------
    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if self.history and self.history[-1]["stage"] == self.model.stage and "valid" not in self.history[-1]:
            self.history[-1]["valid"] = {k: float(v) for k, v in valid_result.items()}
        return valid_score, valid_result

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        result = super().evaluate(eval_data, load_best_model, model_file, show_progress)
        self._log_prefix_store()
        return result

    def evaluate_stages(self, eval_data, show_progress: bool = False) -> dict:
        """Each earlier stage's best checkpoint scored on ``eval_data`` — the halves a multi-stage
        run is compared with (CoLLM against its LoRA stage) — for a model that asks for it
        (``reports_stages``); the run's own checkpoint is loaded back afterwards."""
        if not getattr(self.model, "reports_stages", False) or self._final_file is None:
            return {}
        results = {}
        kept = self.model.stage  # validation may have kept an earlier stage: the run is that stage then
        for at, stage in enumerate(self.stages[:-1]):
            path = self.stage_file(at)
            if stage != kept and os.path.isfile(path):
                results[stage] = self.evaluate(eval_data, load_best_model=True, model_file=path, show_progress=show_progress)
        if results:
            self._load_model_file(self.saved_model_file)
        return results

    def _log_prefix_store(self) -> None:
        """The stores' hit rates so far (what every pass after the first saves)."""
        if getattr(self.model, "prefix_store", None) is not None:
            self.logger.info(self.model.prefix_store.summary())
        if getattr(self.model, "lower", None) is not None and self.model.stage == "lora":
            self.logger.info(self.model.lower.summary())

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """RecBole's checkpoint, and beside it the model's tunable parts in their own formats
        (``save_adapters``: peft's adapter folder, the CIE as safetensors, and the run's
        config), loadable without unpickling (:func:`recbole_collm.restore.restore_adapters`)."""
        super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        stem, _ = os.path.splitext(kwargs.get("saved_model_file", self.saved_model_file))
        if self.optimizer is not None and self.main_process:
            run = {"dataset": self.config["dataset"], "settings": given_settings(self.config), "token_maps": self._token_maps}
            self.model.save_adapters(stem, run)


class _TrainRows:
    """The rows an epoch trained on, for its log line: their AUC (each batch scored just before its
    own optimizer step) and the mean loss beside the label entropy — a loss at the entropy has
    learned the base rate and nothing more, whatever its distance from ln 2."""

    def __init__(self, model):
        self.model = model
        self.pointwise = hasattr(model, "loss_and_logits")
        self.labels: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.losses: list[float] = []

    def loss(self, interaction) -> torch.Tensor:
        if not self.pointwise:
            return self.model.calculate_loss(interaction)
        loss, logits = self.model.loss_and_logits(interaction)
        self.labels.append(interaction[self.model.LABEL].detach().cpu().numpy())
        self.scores.append(logits.detach().float().cpu().numpy())
        self.losses.append(float(loss.detach()))
        return loss

    def record(self) -> dict:
        """``train_auc`` (None with one label), ``train_loss``, ``label_entropy`` (nats), ``rows``."""
        if not self.labels:
            return {}
        labels, scores = np.concatenate(self.labels), np.concatenate(self.scores)
        p = float(labels.mean())
        entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p)) if 0 < p < 1 else 0.0
        return {"train_auc": float(roc_auc_score(labels, scores)) if 0 < p < 1 else None,
                "train_loss": float(np.mean(self.losses)), "label_entropy": entropy, "rows": len(labels)}

    def summary(self) -> str:
        r = self.record()
        auc = "undefined (one label)" if r["train_auc"] is None else f"{r['train_auc']:.4f}"
        return f"AUC {auc}, mean loss {r['train_loss']:.4f} (label entropy {r['label_entropy']:.4f}), {r['rows']} rows"
