"""Trainers: RecBole's with the plugin's evaluation and checkpointing (:mod:`.trainer`), and the
staged trainer of the LLM recommenders (:mod:`.llm_trainer`). ``get_trainer`` finds a model's
trainer here by the name ``<model>Trainer``."""
from recbole_collm.trainer.llm_trainer import LLMTrainer
from recbole_collm.trainer.trainer import PluginTrainer, ResumableTrainerMixin, plugin_trainer

CoLLMTrainer = TALLRecTrainer = ICLTrainer = UITokenTrainer = ALLMRecTrainer = CLLM4RecTrainer = LLMTrainer

__all__ = ["LLMTrainer", "PluginTrainer", "ResumableTrainerMixin", "plugin_trainer", "CoLLMTrainer", "TALLRecTrainer",
           "ICLTrainer", "UITokenTrainer", "ALLMRecTrainer", "CLLM4RecTrainer"]
