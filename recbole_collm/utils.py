"""Model and trainer lookup: the plugin's packages first, then RecBole's."""
from __future__ import annotations

import importlib

from recbole.utils import get_model as get_recbole_model
from recbole.utils import get_trainer as get_recbole_trainer

from recbole_collm.errors import InputError


def get_model(model_name: str) -> type:
    """Return the model class named ``model_name``, searching ``recbole_collm.model`` first."""
    module_path = f"recbole_collm.model.{model_name.lower()}"
    if importlib.util.find_spec(module_path) is not None:
        module = importlib.import_module(module_path)
        if hasattr(module, model_name):
            return getattr(module, model_name)
    try:
        return get_recbole_model(model_name)
    except (ValueError, ImportError) as err:
        # RecBole's search imports its exlib package, which fails without lightgbm/xgboost
        detail = f" ({err})" if isinstance(err, ImportError) else ""
        raise InputError(
            f"model '{model_name}': not found in recbole_collm.model nor in RecBole{detail}"
        ) from None


def get_trainer(model_type, model_name: str) -> type:
    """Return the trainer class for a model: a plugin trainer named ``<model>Trainer`` if there is
    one, else RecBole's, always with the plugin's evaluation and checkpoint loading mixed in."""
    from recbole_collm import trainer as plugin_trainer

    cls = getattr(plugin_trainer, f"{model_name}Trainer", None)
    if cls is None:
        cls = plugin_trainer.with_plugin_evaluation(get_recbole_trainer(model_type, model_name))
    return cls
