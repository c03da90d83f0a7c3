"""Model and trainer lookup: the plugin's packages first, then RecBole's."""
from __future__ import annotations

import importlib
from pathlib import Path

import recbole.model
from recbole.utils import get_trainer as get_recbole_trainer

from recbole_collm import trainer as plugin_trainers
from recbole_collm.errors import InputError

MODEL_PACKAGES = ("general_recommender", "sequential_recommender", "llm_recommender")
RECBOLE_MODELS = Path(recbole.model.__file__).parent


def get_model(model_name: str) -> type:
    """The model class named ``model_name``: ``recbole_collm.model.<type>_recommender.<name>``
    first, then RecBole's model packages."""
    for package in MODEL_PACKAGES:
        module_path = f"recbole_collm.model.{package}.{model_name.lower()}"
        if importlib.util.find_spec(module_path) is not None:
            module = importlib.import_module(module_path)
            if hasattr(module, model_name):
                return getattr(module, model_name)
    return _recbole_model(model_name)


def _recbole_model(model_name: str) -> type:
    """RecBole's own model. RecBole's ``get_model`` imports every model package while it
    searches, and its ``exlib`` package needs lightgbm and xgboost: look where a model can be
    without importing that package (unless the name is one of its models)."""
    for package in ("general_recommender", "context_aware_recommender", "sequential_recommender",
                    "knowledge_aware_recommender", "exlib_recommender"):
        module_path = f"recbole.model.{package}.{model_name.lower()}"
        try:
            found = importlib.util.find_spec(module_path) is not None
        except ImportError as err:  # the package itself needs what is missing (exlib: lightgbm, xgboost)
            if (RECBOLE_MODELS / package / f"{model_name.lower()}.py").is_file():
                raise InputError(f"model '{model_name}': RecBole's {package} needs a package this machine lacks ({err})") from None
            found = False
        if not found:
            continue
        try:
            module = importlib.import_module(module_path)
        except ImportError as err:
            raise InputError(f"model '{model_name}': RecBole's {package} needs a package this machine lacks ({err})") from None
        if hasattr(module, model_name):
            return getattr(module, model_name)
    raise InputError(
        f"model '{model_name}': no such model in recbole_collm.model ({', '.join(MODEL_PACKAGES)}) nor in RecBole; "
        "names are case-sensitive, e.g. MF, SASRec, CoLLM"
    )


def get_trainer(model_type, model_name: str) -> type:
    """The trainer class for a model: the plugin trainer the model class names (``trainer_name``:
    every LLM recommender says ``LLMTrainer``), or one named ``<model>Trainer``, else RecBole's —
    always with the plugin's evaluation and checkpointing mixed in."""
    named = getattr(get_model(model_name), "trainer_name", None) or f"{model_name}Trainer"
    cls = getattr(plugin_trainers, named, None)
    if cls is None:
        cls = plugin_trainers.plugin_trainer(get_recbole_trainer(model_type, model_name))
    return cls
