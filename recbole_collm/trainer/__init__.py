"""Trainers: RecBole's with the plugin's evaluation and checkpointing (:mod:`.trainer`), and the
staged trainer of the LLM recommenders (:mod:`.llm_trainer`). ``get_trainer`` takes the one a
model names (``trainer_name``), else ``<model>Trainer`` here, else RecBole's (with the plugin's
evaluation and checkpointing mixed in)."""
from recbole_collm.trainer.llm_trainer import LLMTrainer
from recbole_collm.trainer.trainer import PluginTrainer, PluginTrainerMixin, plugin_trainer

__all__ = ["LLMTrainer", "PluginTrainer", "PluginTrainerMixin", "plugin_trainer"]
