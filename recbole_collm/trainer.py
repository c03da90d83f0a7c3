"""Trainers: RecBole's, with the plugin's evaluator and explicit checkpoint loading."""
from __future__ import annotations

import itertools
import math
import os
import random

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from torch.nn.utils.clip_grad import clip_grad_norm_
from tqdm import tqdm

from recbole_collm.compat import load_checkpoint
from recbole_collm.errors import InputError
from recbole_collm.evaluator import CollmCollector, CollmEvaluator

_CACHE: dict[type, type] = {}


class PluginEvaluationMixin:
    """Mixed into any RecBole trainer class.

    - Collects user/item ids and reports warm/cold subsets (``CollmCollector``/``CollmEvaluator``).
    - Loads checkpoints with ``weights_only=False``: RecBole's checkpoints pickle the Config, which
      torch >= 2.6 refuses by default. Only files this trainer wrote or the user named are loaded.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        # RecBole names checkpoints by the second; two runs started together would overwrite
        # each other's file, so the process id is added.
        stem, ext = os.path.splitext(self.saved_model_file)
        self.saved_model_file = f"{stem}-{os.getpid()}{ext}"
        self.eval_collector = CollmCollector(config)
        self.evaluator = CollmEvaluator(config)

    def _load_model_file(self, checkpoint_file: str, checkpoint: dict | None = None) -> dict:
        if checkpoint is None:
            checkpoint = load_checkpoint(checkpoint_file, map_location=self.device)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.logger.info(set_color("Loading model structure and parameters from", "blue") + f" {checkpoint_file}")
        return checkpoint

    def _checkpoint_state(self, epoch: int) -> dict:
        return {
            "config": self.config,
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score,
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
        }

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """RecBole's checkpoint, written to a temporary file and renamed: an interrupted save
        never destroys the last good checkpoint."""
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        atomic_torch_save(self._checkpoint_state(epoch), path)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {path}")

    _pending_rng = None  # random state from resume_checkpoint, applied when fit gets the train data
    _steps = 0  # training batches seen by this process (RecBole's cur_step is the early-stopping count)
    _current_epoch = 0

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._current_epoch = epoch_idx
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

    def _check_nan(self, loss, interaction=None):
        """Stop on a NaN/inf loss with where it happened; the last good checkpoint is untouched.
        Called once per training batch."""
        self._steps += 1
        if torch.isfinite(loss).all():
            return
        users = ""
        if interaction is not None and self.config["USER_ID_FIELD"] in interaction:
            ids = interaction[self.config["USER_ID_FIELD"]][:10].tolist()
            users = f", batch user ids (internal) {ids}"
        kept = self.saved_model_file if os.path.isfile(self.saved_model_file) else "none saved yet"
        raise FloatingPointError(
            f"training loss is {loss.item()} at step {self._steps} (epoch {self._current_epoch}){users}; "
            f"last good checkpoint: {kept}"
        )

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if not eval_data:
            return None
        if load_best_model:
            self._load_model_file(model_file or self.saved_model_file)
        dataset = eval_data._dataset
        # full-sort ranking: the loader owns the (possibly capped) catalogue the model ranks over
        self.model.full_sort_items = getattr(eval_data, "items", None)
        self.evaluator.set_train_counts(
            getattr(dataset, "train_user_count", None), getattr(dataset, "train_item_count", None)
        )
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    # --- resume ---------------------------------------------------------------------------------
    @property
    def last_checkpoint_file(self) -> str:
        stem, ext = os.path.splitext(self.saved_model_file)
        return f"{stem}-last{ext}"

    def _resume_state(self) -> dict:
        """Everything a later run needs to continue exactly where this one is now."""
        state = self._checkpoint_state(self._epoch)
        state.update(
            best_valid_result=self.best_valid_result,
            best_file=self.saved_model_file,
            scheduler=self.scheduler.state_dict() if getattr(self, "scheduler", None) is not None else None,
            rng={
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "train_data": self._train_data.generator.get_state(),
            },
        )
        return state

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """RecBole's fit, plus a ``<best>-last.pth`` checkpoint after every validation, from which
        ``--resume`` continues with the same random state (same final metrics as an unbroken run)."""
        self._train_data = train_data
        if self.start_epoch >= self.epochs:
            # resumed after the last epoch: RecBole would overwrite the best checkpoint with the
            # current weights here; keep it
            return self.best_valid_score, self.best_valid_result
        if self._pending_rng is not None:
            train_data.generator.set_state(self._pending_rng["train_data"])
            self._pending_rng = None

        def after_validation(epoch_idx, valid_score):
            self._epoch = epoch_idx
            if saved:
                atomic_torch_save(self._resume_state(), self.last_checkpoint_file)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        return super().fit(train_data, valid_data, verbose, saved, show_progress, after_validation)

    def resume_checkpoint(self, resume_file):
        """Continue from a ``-last.pth`` checkpoint (model, optimizer, scheduler, early-stopping
        state and random state); a best-model checkpoint resumes without the random state."""
        resume_file = str(resume_file)
        checkpoint = load_checkpoint(resume_file, map_location=self.device)
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            raise InputError(
                f"resume: {resume_file} holds a '{checkpoint['config']['model']}' checkpoint, "
                f"cannot resume model '{self.config['model']}'"
            )
        self._restore_stage(checkpoint)
        self._load_model_file(resume_file, checkpoint)
        self.saved_model_file = checkpoint.get("best_file") or resume_file
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.best_valid_result = checkpoint.get("best_valid_result")
        if self.optimizer is not None and checkpoint["optimizer"] is not None:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        self._pending_scheduler = checkpoint.get("scheduler")
        rng = checkpoint.get("rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            np.random.set_state(rng["numpy"])
            random.setstate(rng["python"])
            self._pending_rng = rng
        self.logger.info(f"Checkpoint {resume_file} loaded. Resume training from epoch {self.start_epoch}")

    def _restore_stage(self, checkpoint: dict) -> None:
        """Hook for trainers with several stages."""


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(obj, tmp, pickle_protocol=4)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save_dir(save, path: str) -> None:
    """``save(folder)`` into a temporary folder, then swap it in for ``path``."""
    import shutil

    tmp, old = f"{path}.tmp{os.getpid()}", f"{path}.old{os.getpid()}"
    try:
        save(tmp)
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def with_plugin_evaluation(trainer_class: type) -> type:
    """``trainer_class`` with :class:`PluginEvaluationMixin` mixed in (cached per class)."""
    if issubclass(trainer_class, PluginEvaluationMixin):
        return trainer_class
    if trainer_class not in _CACHE:
        _CACHE[trainer_class] = type(
            f"Collm{trainer_class.__name__}", (PluginEvaluationMixin, trainer_class), {}
        )
    return _CACHE[trainer_class]


CollmTrainer = with_plugin_evaluation(Trainer)


class CoLLMTrainer(CollmTrainer):
    """RecBole's fit loop (early stopping on ``valid_metric``) for the LLM models, with AdamW
    over the trainable parameters only, linear warmup + cosine decay, gradient accumulation,
    and ``stage: all`` = the LoRA stage, then the CIE stage from the best LoRA weights.

    The CIE stage has a learning rate and an epoch count of its own (``cie_learning_rate``,
    ``cie_epochs``; empty = ``learning_rate``, ``epochs``): it trains a small MLP over stored
    prefixes, so it affords more epochs and a larger step than the LoRA stage."""

    def __init__(self, config, model):
        self.lora_epochs = int(config["epochs"])
        self.lora_train_rows = _positive(config, "lora_train_rows", int)
        self.cie_learning_rate = _positive(config, "cie_learning_rate", float) or float(config["learning_rate"])
        self.cie_epochs = _positive(config, "cie_epochs", int) or self.lora_epochs
        super().__init__(config, model)

    def _build_optimizer(self, **kwargs):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            return None  # ICL: nothing to train
        lr = self.cie_learning_rate if self.model.stage == "cie" else self.learning_rate
        return torch.optim.AdamW(params, lr=lr, weight_decay=self.config["weight_decay"])

    _final_file = None  # stage "all": where the stage-2 (final) checkpoint goes
    _resume_in_stage2 = False
    _pending_scheduler = None

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        if self.config["stage"] != "all" or not self.model.uses_ids:
            return self._fit_stage(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        if not self._resume_in_stage2:
            if self._final_file is None:  # a fresh run (a resumed one already points at -lora)
                self._final_file = self.saved_model_file
                stem, ext = os.path.splitext(self._final_file)
                self.saved_model_file = f"{stem}-lora{ext}"
            self._fit_stage(train_data, valid_data, verbose, saved, show_progress, callback_fn)
            if saved:
                self._load_model_file(self.saved_model_file)
            self.logger.info(set_color("Stage 2: CIE with LLM and LoRA frozen", "green"))
            self.model.set_stage("cie")
            self.saved_model_file = self._final_file
            self.start_epoch, self.cur_step = 0, 0
            self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf
            self.best_valid_result = None
            self.optimizer = self._build_optimizer()
        return self._fit_stage(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def _fit_stage(self, train_data, valid_data, verbose, saved, show_progress, callback_fn):
        self.epochs = self.cie_epochs if self.model.stage == "cie" else self.lora_epochs
        if self.optimizer is None:
            if saved:
                self._save_checkpoint(-1, verbose=verbose)
            return self.best_valid_score, None
        accumulation = max(1, int(self.config["gradient_accumulation_steps"] or 1))
        steps = max(1, self.epochs * math.ceil(self._epoch_batches(train_data) / accumulation))
        warmup = min(int(self.config["warmup_steps"] or 0), steps // 10)
        from transformers import get_cosine_schedule_with_warmup

        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, warmup, steps)
        if self._pending_scheduler is not None:
            self.scheduler.load_state_dict(self._pending_scheduler)
            # building the scheduler reset the learning rates to step 0's; put back the saved ones
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr
            self._pending_scheduler = None
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def _resume_state(self) -> dict:
        state = super()._resume_state()
        state.update(stage=self.model.stage, final_file=self._final_file)
        return state

    def _restore_stage(self, checkpoint: dict) -> None:
        self._final_file = checkpoint.get("final_file")
        stage = checkpoint.get("stage")
        if self.config["stage"] == "all" and stage == "cie":
            self.model.set_stage("cie")
            self.optimizer = self._build_optimizer()
            self._resume_in_stage2 = True

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._current_epoch = epoch_idx
        self.model.train()
        accumulation = max(1, int(self.config["gradient_accumulation_steps"] or 1))
        params = [p for p in self.model.parameters() if p.requires_grad]
        total_loss = 0.0
        n_batches = self._epoch_batches(train_data)
        batches = itertools.islice(train_data, n_batches)
        if show_progress:
            batches = tqdm(batches, total=n_batches, ncols=100, desc=f"Train {epoch_idx:>4}")
        self.optimizer.zero_grad()
        for batch_idx, interaction in enumerate(batches):
            interaction = interaction.to(self.device)
            loss = self.model.calculate_loss(interaction)
            self._check_nan(loss, interaction)
            (loss / accumulation).backward()
            total_loss += loss.item()
            if (batch_idx + 1) % accumulation == 0 or batch_idx + 1 == n_batches:
                if self.clip_grad_norm:
                    clip_grad_norm_(params, **self.clip_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad()
            if show_progress:
                batches.set_postfix(loss=f"{loss.item():.4f}")
        self._log_prefix_store()
        return total_loss

    def _epoch_batches(self, train_data) -> int:
        """Batches per epoch: all of them, except in the LoRA stage under ``lora_train_rows`` (the
        expensive stage gets a smaller share of the row budget: the first batches of the epoch's
        seeded shuffle, different rows each epoch)."""
        if self.model.stage == "lora" and self.lora_train_rows:
            return min(len(train_data), math.ceil(self.lora_train_rows / self.config["train_batch_size"]))
        return len(train_data)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        result = super().evaluate(eval_data, load_best_model, model_file, show_progress)
        self._log_prefix_store()
        return result

    def _log_prefix_store(self) -> None:
        """The store's hit rate so far (what every pass after the first saves)."""
        if getattr(self.model, "prefix_store", None) is not None:
            self.logger.info(self.model.prefix_store.summary())

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        stem, _ = os.path.splitext(kwargs.get("saved_model_file", self.saved_model_file))
        if self.model.uses_lora and self.optimizer is not None:
            # the adapter in peft's own format (safetensors), loadable without unpickling
            atomic_save_dir(self.model.llm.save_pretrained, f"{stem}-adapter")
        if self.model.cie is not None:
            from safetensors.torch import save_file

            cie = {k: v.detach().contiguous().cpu() for k, v in self.model.cie.state_dict().items()}
            tmp = f"{stem}-cie.safetensors.tmp{os.getpid()}"
            save_file(cie, tmp)
            os.replace(tmp, f"{stem}-cie.safetensors")


def _positive(config, key: str, kind: type):
    """``config[key]`` as a positive ``kind``, None when empty; anything else is one error line."""
    value = config[key]
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number <= 0 or (kind is int and number != float(value)):
        raise InputError(f"{key}: '{value}' must be a positive {kind.__name__} (or empty)")
    return number


TALLRecTrainer = CoLLMTrainer
ICLTrainer = CoLLMTrainer
UITokenTrainer = CoLLMTrainer
