"""The way back from saved files to a model: its config, the dataset rebuilt from it (ids as when
it was saved) and the model with its weights — from a RecBole checkpoint (:func:`restore`: used by
``load_data_and_model``, the CIE's collaborative source, scoring and the evaluation of a named
checkpoint), or from an LLM model's tunable parts and their config (:func:`restore_adapters`:
nothing unpickled)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from recbole.utils import init_seed

from recbole_collm.config import Config
from recbole_collm.data import create_dataset
from recbole_collm.data.utils import data_preparation
from recbole_collm.errors import InputError, MissingInputError
from recbole_collm.files import read_checkpoint
from recbole_collm.settings import RENAMED, validate
from recbole_collm.utils import get_model


@dataclass
class Restored:
    """What a checkpoint rebuilds: its own config, the dataset and splits built from it (so ids
    mean what they meant when it was saved) and the model with its weights."""

    path: str
    config: Any
    dataset: Any
    splits: tuple
    model: torch.nn.Module


def _rename_settings(config) -> None:
    """A Config saved before a setting was renamed holds the old key: give its value the new one."""
    for old, new in RENAMED.items():
        if old in config.final_config_dict and config[new] is None:
            config[new] = config[old]


def _rebuild(config, token_maps: dict | None, loaders: bool) -> tuple:
    """The dataset (ids as when the model was saved: ``token_maps``), its splits and a fresh model,
    the caller's random state left alone (the weights come from files, so the constructor's random
    init must not consume it); ``loaders``: the splits as RecBole's loaders, seeded as RecBole's
    ``load_data_and_model`` seeds them."""
    with torch.random.fork_rng(devices=[]):
        if loaders:
            init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config, token_maps)
        splits = data_preparation(config, dataset) if loaders else tuple(dataset.build())
        train = splits[0]._dataset if loaders else splits[0]
        return dataset, splits, get_model(config["model"])(config, train)


def restore(path: str | os.PathLike, loaders: bool = False, map_location: Any = "cpu", checkpoint: dict | None = None,
            settings: dict | None = None) -> Restored:
    """Config, data and model from a checkpoint this plugin (or RecBole) saved.

    ``loaders=True``: the splits as RecBole's data loaders, seeded as RecBole's
    ``load_data_and_model`` seeds them (the same batches as the run that saved it). Otherwise the
    splits as datasets (what a model's constructor needs) and the caller's random state is left
    alone: the weights come from the file, so the constructor's random init must not consume it.
    ``checkpoint``: the file's contents when the caller has read them already. ``settings``: keys
    that change how the model runs, not what it learned (e.g. ``llm_compute_dtype`` for scoring),
    checked as the settings of a run are.
    """
    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(path, map_location)
    if not isinstance(checkpoint, dict) or "config" not in checkpoint or "state_dict" not in checkpoint:
        raise InputError(f"checkpoint file '{path}' is not a RecBole checkpoint (no config / state_dict)")
    config = checkpoint["config"]
    _rename_settings(config)
    if settings:
        validate(settings)
        for key, value in settings.items():
            config[key] = value
    dataset, splits, model = _rebuild(config, checkpoint.get("token_maps"), loaders)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:  # sizes of another dataset (a checkpoint saved without its token maps)
        raise InputError(f"checkpoint file '{path}' does not fit its dataset as it is now (the data changed since "
                         f"it was saved?): {str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else err}") from None
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return Restored(str(path), config, dataset, splits, model)


def restore_adapters(stem: str | os.PathLike, settings: dict | None = None) -> Restored:
    """Config, data and model from what ``save_adapters`` wrote for ``stem`` (``<stem>-config.json``,
    ``<stem>-adapter/``, ``<stem>-<part>.safetensors``): the model is built from the run's settings
    (its LLM from ``llm_path``, as the run had it) and gets the saved parts and stage — the
    symmetric counterpart of saving them, reading no pickle. ``settings``: as for :func:`restore`."""
    path = f"{stem}-config.json"
    if not os.path.isfile(path):
        raise MissingInputError(f"{path}: not found (save_adapters writes it beside the model's parts when a trainer saves them)")
    try:
        record = json.loads(Path(path).read_text())
        model_name, dataset_name, given = record["model"], record["dataset"], record["settings"]
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: not an adapter config (expected model, dataset and settings; {err})") from None
    # the Config checks every setting, ``settings`` included
    config = Config(model=model_name, dataset=dataset_name, config_dict={**given, **(settings or {})})
    dataset, splits, model = _rebuild(config, record.get("token_maps"), loaders=False)
    model.load_adapters(str(stem))
    model.load_other_parameter(record.get("other_parameter"))
    return Restored(str(path), config, dataset, splits, model)
