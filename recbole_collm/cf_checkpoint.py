"""``cie_checkpoint: auto``: the collaborative model CoLLM reads, trained once and cached.

The paper's CoLLM-MF feeds the CIE from a pretrained MF. With ``auto`` the plugin trains the model
named by ``cie_model`` (its own yaml: its size, learning rate, epochs; all train rows) on the same
dataset and data settings, keeps the checkpoint in ``checkpoint_dir`` under a name derived from
the model, the dataset and those settings, and reuses it on every later run with the same ones.
"""
from __future__ import annotations

import hashlib
import json
import os
from logging import getLogger

from recbole.utils import init_seed

# data settings of the user's run that the collaborative model must share (its own model settings
# — size, learning rate, epochs, MAX_ITEM_LIST_LENGTH — come from its yaml, never from CoLLM's)
DATA_KEYS = ("eval_args", "seed", "title_field", "warm_threshold", "cold_threshold")
NOT_SHARED = ("MAX_ITEM_LIST_LENGTH", "train_rows_limit", "eval_rows_limit")


def cf_settings(config) -> dict:
    """The user's data settings the collaborative model is trained with (and cached by)."""
    given = config.external_config_dict
    keys = [k for k in (*config.parameters["Dataset"], *DATA_KEYS) if k in given and k not in NOT_SHARED]
    settings = {k: config[k] for k in dict.fromkeys(keys)}
    if "eval_args" in settings:
        # the user's split, but the CF model's own protocol: labeled rows, selected on AUC (a
        # ranking run of CoLLM or A-LLMRec would otherwise need ranking metrics for it too)
        settings["eval_args"] = {**settings["eval_args"], "mode": "labeled"}
    # the resolved folder of this dataset (RecBole appends the dataset name to data_path)
    settings["data_path"] = os.path.dirname(os.path.normpath(config["data_path"]))
    return settings


def cache_path(config, name: str, settings: dict) -> str:
    key = json.dumps({"model": name, "dataset": config["dataset"], **settings}, sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return os.path.join(config["checkpoint_dir"], f"{name}-{config['dataset']}-auto-{digest}.pth")


def auto_cf_checkpoint(config) -> str:
    """The cached checkpoint of ``cie_model`` for this dataset and data settings, trained first
    when there is none. The seed is re-initialised afterwards, so the caller's run is the same
    whether the checkpoint was cached or not."""
    from recbole_collm.config import Config
    from recbole_collm.quick_start import prepare

    name = config["cie_model"]  # one of the CF sources (recbole_collm.settings checked it)
    settings = cf_settings(config)
    path = cache_path(config, name, settings)
    logger = getLogger()
    if os.path.isfile(path):
        logger.info(f"cie_checkpoint: auto -> {path} (cached {name})")
        init_seed(config["seed"], config["reproducibility"])  # as after training one: same run either way
        return path
    logger.info(f"cie_checkpoint: auto -> training {name} on {config['dataset']} for the CIE")
    overrides = {"checkpoint_dir": config["checkpoint_dir"], "show_progress": False, "state": config["state"],
                 "train_rows_limit": None, "eval_rows_limit": None, **settings}
    cf_config = Config(model=name, dataset=config["dataset"], config_dict=overrides)
    _, (train_data, valid_data, _), _, trainer = prepare(cf_config)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    os.replace(trainer.saved_model_file, path)  # atomic: a reader sees the whole file or none
    if os.path.isfile(trainer.last_checkpoint_file):  # its resume file: the run is complete
        os.remove(trainer.last_checkpoint_file)
    init_seed(config["seed"], config["reproducibility"])
    logger.info(f"cie_checkpoint: auto -> {path} ({name} trained)")
    return path
