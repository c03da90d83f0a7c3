"""The settings one run passes to another: the data settings the ``cf_checkpoint: auto`` model is
trained with and its cache file (:func:`cf_settings`, :func:`cache_path`), and the settings an
adapter config records to rebuild its run (:func:`given_settings`).

The paper's CoLLM-MF feeds the CIE from a pretrained MF. With ``auto`` the runner
(:func:`recbole_collm.quick_start.prepare`) trains the model named by ``cf_model`` before the LLM
model is built: exactly its own settings (its yaml: size, learning rate, epochs; all train rows)
plus the user's data settings, never the LLM run's command line or training settings. The
checkpoint is kept in ``checkpoint_dir`` under a name derived from everything that shaped it —
every resolved setting of the collaborative run and the content of the data files — and reused
by every later run that would train the same model.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# data settings of the user's run that the collaborative model must share (its own model settings
# — size, learning rate, epochs, MAX_ITEM_LIST_LENGTH — come from its yaml, never from CoLLM's)
DATA_KEYS = ("eval_args", "seed", "title_field", "warm_threshold", "cold_threshold")
NOT_SHARED = ("MAX_ITEM_LIST_LENGTH", "train_rows_limit", "eval_rows_limit")
# resolved settings that do not change the trained weights (left out of the cache key)
RUN_ONLY = ("checkpoint_dir", "show_progress", "state", "device", "gpu_id", "use_gpu", "local_rank", "world_size",
            "nproc", "offset", "ip", "port", "single_spec", "log_wandb", "wandb_project", "verbose", "resume",
            "strict_config", "config_files", "eval_batch_size", "worker")


def cf_settings(config) -> dict:
    """The user's data settings the collaborative model is trained with."""
    given = config.external_config_dict
    keys = [k for k in (*config.parameters["Dataset"], *DATA_KEYS) if k in given and k not in NOT_SHARED]
    settings = {k: config[k] for k in dict.fromkeys(keys)}
    if "eval_args" in settings:
        # the user's split, but the CF model's own protocol: labeled rows, selected on AUC (a
        # ranking run of CoLLM or A-LLMRec would otherwise need ranking metrics for it too)
        settings["eval_args"] = {**settings["eval_args"], "mode": "labeled"}
    settings["data_path"] = data_folder(config)
    return settings


def data_folder(config) -> str:
    """The folder that holds the dataset's own folder: what ``data_path`` must be to build the same
    data again (RecBole appends the dataset name to the ``data_path`` it resolves)."""
    return os.path.dirname(os.path.normpath(config["data_path"]))


def given_settings(config) -> dict:
    """The settings a run was given (yaml files, command line, config dict), at their resolved
    values, but where it writes and how it logs; ``data_path`` as the folder that holds the
    dataset's own folder. A Config built from them with the same model and dataset is that run's
    (the plugin's yaml layers are read again)."""
    settings = {k: config[k] for k in config.external_config_dict if k not in RUN_ONLY}
    settings["data_path"] = data_folder(config)
    return settings


def cache_path(cf_config) -> str:
    """``<checkpoint_dir>/<model>-<dataset>-auto-<digest>.pth``: the digest covers every resolved
    setting of the collaborative run (but where it writes and how it logs) and the bytes of the
    dataset's files, so a changed setting, yaml default or data file trains a new model."""
    values = {k: v for k, v in cf_config.final_config_dict.items() if k not in RUN_ONLY}
    digest = hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode())
    folder = Path(cf_config["data_path"])
    for file in sorted(folder.glob(f"{cf_config['dataset']}.*")):
        digest.update(file.name.encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    name = f"{cf_config['model']}-{cf_config['dataset']}-auto-{digest.hexdigest()[:12]}.pth"
    return os.path.join(cf_config["checkpoint_dir"], name)
