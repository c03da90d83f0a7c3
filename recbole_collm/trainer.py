"""Trainers: RecBole's, with the plugin's evaluator and explicit checkpoint loading."""
from __future__ import annotations

import os

from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_collm.compat import load_checkpoint
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

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if not eval_data:
            return None
        if load_best_model:
            self._load_model_file(model_file or self.saved_model_file)
        dataset = eval_data._dataset
        self.evaluator.set_train_counts(
            getattr(dataset, "train_user_count", None), getattr(dataset, "train_item_count", None)
        )
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def resume_checkpoint(self, resume_file):
        resume_file = str(resume_file)
        checkpoint = load_checkpoint(resume_file, map_location=self.device)
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            raise ValueError(
                f"{resume_file}: checkpoint of model '{checkpoint['config']['model']}', "
                f"cannot resume model '{self.config['model']}'"
            )
        self._load_model_file(resume_file, checkpoint)
        self.saved_model_file = resume_file
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")


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
