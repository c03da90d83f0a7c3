"""The way from settings and saved files to a model: :func:`build_model` (the one way a model is
built: a model that reads a collaborative checkpoint is handed it restored and aligned,
:func:`collaborative_source`), and the way back from a RecBole checkpoint (:func:`restore`: its
config, the dataset rebuilt from it with the ids it had, the model with its weights — used by
``load_data_and_model``, the collaborative source, scoring and the evaluation of a named
checkpoint) or from an LLM model's tunable parts and their config (:func:`restore_adapters`:
nothing unpickled)."""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recbole.utils import init_seed

from recbole_collm.config import Config
from recbole_collm.data import create_dataset
from recbole_collm.data.utils import data_preparation
from recbole_collm.errors import InputError, MissingInputError
from recbole_collm.files import read_checkpoint
from recbole_collm.model.cf_source import CheckpointSource
from recbole_collm.settings import validate
from recbole_collm.utils import get_model

AUTO_UNRESOLVED = ("cf_checkpoint: 'auto' is resolved by the runner before the model is built "
                   "(recbole_collm.quick_start.prepare); pass a saved checkpoint to build the model by hand")


@dataclass
class Restored:
    """What a checkpoint rebuilds: its own config, the dataset and splits built from it (so ids
    mean what they meant when it was saved) and the model with its weights."""

    path: str
    config: Any
    dataset: Any
    splits: tuple
    model: torch.nn.Module


def build_model(config, dataset) -> torch.nn.Module:
    """``config["model"]`` built on ``dataset`` (the train split): RecBole's
    ``get_model(name)(config, dataset)``, except that a model reading a collaborative checkpoint
    (``reads_cf_checkpoint``: CoLLM, A-LLMRec) is handed it ready (:func:`collaborative_source`),
    so a model's constructor never restores files or runs a pipeline."""
    model_class = get_model(config["model"])
    if getattr(model_class, "reads_cf_checkpoint", False):
        return model_class(config, dataset, source=collaborative_source(config, dataset))
    return model_class(config, dataset)


def collaborative_source(config, dataset) -> CheckpointSource | None:
    """The trained CF model named by ``cf_checkpoint``, restored on its own dataset and aligned
    to ``dataset``'s ids by token (refused below ``cf_min_overlap``); a checkpoint of a model the
    run's model cannot read (its ``cf_models``) is refused before its data is rebuilt. None
    without a checkpoint (CoLLM then trains an MF table from scratch, variant T2)."""
    path = config["cf_checkpoint"]
    if not path:
        return None
    if path == "auto":
        raise InputError(AUTO_UNRESOLVED)
    checkpoint = read_checkpoint(path)
    accepted = get_model(config["model"]).cf_models
    name = checkpoint["config"]["model"] if isinstance(checkpoint, dict) and "config" in checkpoint else None
    if name is not None and name not in accepted:  # not a RecBole checkpoint at all: restore says so
        raise InputError(f"cf_checkpoint: {path} holds {name} weights; {config['model']} reads one of {', '.join(accepted)}")
    restored = restore(path, checkpoint=checkpoint)
    return CheckpointSource(restored.model, restored.dataset, dataset, origin=str(path),
                            min_overlap=config["cf_min_overlap"], history_length=config["cf_history_length"],
                            other_dataset=bool(config["cf_other_dataset"]))


def _rebuild(config, token_maps: dict | None, loaders: bool) -> tuple:
    """The dataset (ids as when the model was saved: ``token_maps``), its splits and a fresh model,
    seeded as RecBole's ``load_data_and_model`` seeds them — a random split (RecBole's ``order:
    RO``) is then the one the model was trained on, and with it a graph model's graph — and the
    caller's random state left alone (the weights come from files); ``loaders``: the splits as
    RecBole's loaders."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config, token_maps)
        splits = data_preparation(config, dataset) if loaders else tuple(dataset.build())
        train = splits[0]._dataset if loaders else splits[0]
        model = build_model(config, train)
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    return dataset, splits, model


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
    if not os.path.isdir(config["data_path"]):  # RecBole would try to download it
        raise MissingInputError(f"checkpoint file '{path}': its dataset folder {config['data_path']} is not there "
                                f"(the atomic files of '{config['dataset']}' it was trained on)")
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
        model_name, dataset_name, given = record["model"], record["dataset"], dict(record["settings"])
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: not an adapter config (expected model, dataset and settings; {err})") from None
    # the Config checks every setting, ``settings`` included
    config = Config(model=model_name, dataset=dataset_name, config_dict={**given, **(settings or {})})
    dataset, splits, model = _rebuild(config, record.get("token_maps"), loaders=False)
    model.load_adapters(str(stem))
    model.load_other_parameter(record.get("other_parameter"))
    return Restored(str(path), config, dataset, splits, model)
