"""RecBole's trainers with what every plugin run needs: warm/cold evaluation, checkpoints that
survive interruption, exact resume, and a clear stop on a NaN loss.

:func:`plugin_trainer` mixes :class:`PluginTrainerMixin` into any RecBole trainer class, so a
RecBole model run through the plugin gets the same guarantees as the plugin's own.
"""
from __future__ import annotations

import os
import random
from typing import Callable

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from torch.nn.parallel import DistributedDataParallel

from recbole_collm.errors import InputError
from recbole_collm.evaluator import CollmCollector, CollmEvaluator
from recbole_collm.files import read_checkpoint, save_checkpoint

_CACHE: dict[type, type] = {}
# settings a resumed run takes from its checkpoint (the optimizer and scheduler states hold them);
# every other setting is this run's (e.g. more epochs)
RESUME_KEEPS = ("learner", "learning_rate", "cie_learning_rate", "weight_decay")


class PluginTrainerMixin:
    """The plugin's behaviour, mixed into any RecBole trainer class (:func:`plugin_trainer`).

    - Evaluation with the plugin's collector and evaluator: user/item ids per row, warm/cold
      subsets (train counts collected from the train data by RecBole's ``data_collect`` hook),
      and the scored rows returned with the result (``result.rows``).
    - Checkpoints written atomically and named with the process id; ``<best>-last.pth`` after
      every validation, from which ``resume`` continues with the same random state.
    - A NaN/inf loss stops training with the step, the batch's users and the last good checkpoint.
    - Checkpoints load with full unpickling (RecBole's pickle the Config): only files this trainer
      wrote or the user named are loaded.
    """

    def __init__(self, config, model):
        self.distributed = not config["single_spec"]  # several processes (DDP)
        distributed_cpu = self.distributed and config["device"].type == "cpu"
        if distributed_cpu:
            # RecBole wraps the model for DDP with device_ids=[local_rank] and SyncBatchNorm, both
            # GPU-only: on the CPU (gloo) the plain wrapper is built below instead
            config["single_spec"] = True
        try:
            super().__init__(config, model)
        finally:
            if distributed_cpu:
                config["single_spec"] = False
        if distributed_cpu:
            self._wrap_distributed()
        # RecBole names checkpoints by the second; two runs started together would overwrite
        # each other's file, so the process id is added.
        stem, ext = os.path.splitext(self.saved_model_file)
        self.saved_model_file = f"{stem}-{os.getpid()}{ext}"
        if self.distributed:  # several processes: process 0 writes, all read its file
            name = [self.saved_model_file]
            torch.distributed.broadcast_object_list(name, src=0)
            self.saved_model_file = name[0]
        self.eval_collector = CollmCollector(config)
        self.evaluator = CollmEvaluator(config)
        self.main_process = not self.distributed or config["local_rank"] == 0  # the one that writes files
        self.uid_field = config["USER_ID_FIELD"]
        self._pending_rng = None  # random state from resume_checkpoint, applied when fit gets the train data
        self._steps = 0  # training batches seen by this process (RecBole's cur_step is the early-stopping count)
        self._current_epoch = 0
        self._on_validation = None
        self._resume_each_epoch = False  # set by fit when it runs without validation
        self._token_maps = None  # set by fit: the user and item tokens of the data, in id order

    def _wrap_distributed(self) -> None:
        """The DDP wrapper RecBole's training step runs through; it reduces the gradients of the
        parameters that train when it is built (the LLM trainer rebuilds it per stage). No GPU
        arguments: a module on one device (CPU or one GPU) needs none."""
        self.distributed_model = DistributedDataParallel(self.model)

    # --- checkpoints ----------------------------------------------------------------------------
    def _load_model_file(self, checkpoint_file: str, checkpoint: dict | None = None) -> dict:
        if checkpoint is None:
            if self.distributed:
                torch.distributed.barrier()  # process 0 has finished writing it
            checkpoint = read_checkpoint(checkpoint_file, map_location=self.device)
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
            # the ids' meaning: restore renumbers the data by these tokens (recbole_collm.restore)
            "token_maps": self._token_maps,
        }

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """RecBole's checkpoint, written atomically: an interrupted save never destroys the last
        good checkpoint."""
        if not self.main_process:
            return
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        save_checkpoint(self._checkpoint_state(epoch), path)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {path}")
        if self._resume_each_epoch and epoch >= 0:
            # no validation pass (eval_step: 0, or no valid data): RecBole saves after every epoch
            # instead, and the resume state goes with it
            self._epoch = epoch
            save_checkpoint(self._resume_state(), self.last_checkpoint_file)

    @property
    def last_checkpoint_file(self) -> str:
        stem, ext = os.path.splitext(self.saved_model_file)
        return f"{stem}-last{ext}"

    # --- training -------------------------------------------------------------------------------
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
        if interaction is not None and self.uid_field in interaction:
            ids = interaction[self.uid_field][:10].tolist()
            users = f", batch user ids (internal) {ids}"
        kept = self.saved_model_file if os.path.isfile(self.saved_model_file) else "none saved yet"
        raise FloatingPointError(
            f"training loss is {loss.item()} at step {self._steps} (epoch {self._current_epoch}){users}; "
            f"last good checkpoint: {kept}"
        )

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if self._on_validation is not None:
            self._on_validation(self._current_epoch, valid_result)
        return valid_score, valid_result

    def fit(
        self,
        train_data,
        valid_data=None,
        verbose=True,
        saved=True,
        show_progress=False,
        callback_fn=None,
        on_validation: Callable[[int, dict], None] | None = None,
    ):
        """RecBole's fit, plus a ``<best>-last.pth`` checkpoint after every validation (after every
        epoch when there is none), from which ``resume`` continues with the same random state (same
        final metrics as an unbroken run).
        ``on_validation(epoch, valid_result)`` sees every validation's full result."""
        self._train_data = train_data
        self._token_maps = token_maps(train_data._dataset)
        self._on_validation = on_validation
        if self.start_epoch >= self.epochs:
            # resumed after the last epoch: RecBole would overwrite the best checkpoint with the
            # current weights here; keep it (and still collect the train counts for evaluation)
            self.eval_collector.data_collect(train_data)
            return self.best_valid_score, self.best_valid_result
        if self._pending_rng is not None:
            train_data.generator.set_state(self._pending_rng["train_data"])
            self._pending_rng = None

        def after_validation(epoch_idx, valid_score):
            self._epoch = epoch_idx
            if saved and self.main_process:
                save_checkpoint(self._resume_state(), self.last_checkpoint_file)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        self._resume_each_epoch = saved and (self.eval_step <= 0 or not valid_data)
        try:
            return super().fit(train_data, valid_data, verbose, saved, show_progress, after_validation)
        finally:
            self._resume_each_epoch = False

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """RecBole's evaluate; the result also carries the scored rows (``result.rows``: uid, iid,
        label, score) for labeled evaluation."""
        if not eval_data:
            return None
        if load_best_model:
            self._load_model_file(model_file or self.saved_model_file)
        if self.distributed:
            # under DDP each process scores its shard of the rows (RecBole's sampler pads the last
            # shards with repeats): the dataset index of every row, so the evaluator can gather the
            # shards and count each row once
            self.eval_collector.data_struct.set("data.row_index", torch.tensor(list(eval_data.sampler)))
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def _map_reduce(self, result, num_sample):
        """RecBole averages the processes' metrics weighted by rows — wrong for AUC and UAUC and
        counting padded rows twice; a result the evaluator computed on the gathered rows is
        already the whole split's."""
        if getattr(result, "gathered", False):
            return result
        return super()._map_reduce(result, num_sample)

    # --- resume ---------------------------------------------------------------------------------
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

    def resume_checkpoint(self, resume_file, dataset=None):
        """Continue from a ``-last.pth`` checkpoint (model, optimizer, scheduler, early-stopping
        state and random state); a best-model checkpoint resumes without the random state.
        ``dataset`` (the run's train data): refused when its users/items are not the ones the
        checkpoint was trained with."""
        resume_file = str(resume_file)
        checkpoint = read_checkpoint(resume_file, map_location=self.device)
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            raise InputError(
                f"resume: {resume_file} holds a '{checkpoint['config']['model']}' checkpoint, "
                f"cannot resume model '{self.config['model']}'"
            )
        saved_maps = checkpoint.get("token_maps")
        if dataset is not None and saved_maps is not None and saved_maps != token_maps(dataset):
            raise InputError(
                f"resume: {resume_file} was trained on other data (dataset '{checkpoint['config']['dataset']}', "
                f"{len(saved_maps[dataset.uid_field]) - 1} users); this run has '{self.config['dataset']}', "
                f"{dataset.user_num - 1} users"
            )
        for key in RESUME_KEEPS:
            old, new = checkpoint["config"][key], self.config[key]
            if old != new:
                self.logger.warning(f"resume: {key} stays {old} (the optimizer state in {os.path.basename(resume_file)} "
                                    f"continues); this run's {key}={new} is not used")
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


def token_maps(dataset) -> dict:
    """``{field: [token, ...]}`` of the user and item ids (RecBole's ``field2id_token``)."""
    return {field: [str(t) for t in dataset.field2id_token[field]] for field in (dataset.uid_field, dataset.iid_field)}


def plugin_trainer(trainer_class: type) -> type:
    """``trainer_class`` with :class:`PluginTrainerMixin` mixed in (cached per class)."""
    if issubclass(trainer_class, PluginTrainerMixin):
        return trainer_class
    if trainer_class not in _CACHE:
        _CACHE[trainer_class] = type(f"Plugin{trainer_class.__name__}", (PluginTrainerMixin, trainer_class), {})
    return _CACHE[trainer_class]


PluginTrainer = plugin_trainer(Trainer)
