"""Every setting's type and range, checked in one place when the Config is built — before a dataset
is read or an LLM loaded — so a wrong value is one line naming the key and what it must be, not a
traceback minutes later. Models and trainers then read each setting once in ``__init__`` and trust
it. A key absent from the run's settings (a CoLLM key in an MF run) is not checked.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from recbole_collm.errors import InputError, MissingInputError

# A-LLMRec's candidate scores (model/llm_recommender/allmrec.py: title_scores), the default first
RANK_BY = ("sum", "relative", "mean", "generate")
ALIGN_INPUTS = ("standardized", "raw")

SCORE_MODES = ("yes_no", "yes_logit")
# the LLM's weights (llm_dtype), its compute (llm_compute_dtype) and its prefix store (prefix_store_dtype):
# auto = bf16 where the hardware computes it natively, else float32
DTYPES = ("auto", "float32", "bfloat16", "float16")
# the collaborative models whose vectors fill the LLM models' slots: the plugin's (trained on labels, as
# the paper) and RecBole's own (as run_recbole or the plugin's runner trained them)
CF_SOURCES = ("MF", "LightGCNCTR", "SASRecCTR", "DINCTR", "BPR", "LightGCN", "SASRec", "DIN")
LEARNERS = ("adam", "adamw", "sgd", "adagrad", "rmsprop", "sparse_adam")


def _number(value: Any, kind: type) -> int | float | None:
    """``value`` as ``kind`` (an int must be whole; booleans are not numbers), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        return None
    if kind is int and number != float(value):
        return None
    return number


def _numeric(kind: type, low: float, optional: bool = False, above: bool = False, hint: str = "") -> Callable[[str, Any], None]:
    what = f"{'a positive' if above and low == 0 else 'a'} {'whole number' if kind is int else 'number'}"
    if not (above and low == 0):
        what += f" ≥ {low:g}"
    if hint:
        what += f" ({hint})"
    elif optional:
        what += " (or empty)"

    def check(key: str, value: Any) -> None:
        if value is None and optional:
            return
        number = _number(value, kind)
        if number is None or number < low or (above and number == low):
            raise InputError(f"{key}: '{value}' must be {what}")

    return check


def _choice(options: tuple, optional: bool = False) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if value is None and optional:
            return
        if value not in options:
            raise InputError(f"{key}: '{value}' is not one of {', '.join(options)}")

    return check


def _fraction(key: str, value: Any) -> None:
    number = _number(value, float)
    if number is None or not 0 <= number <= 1:
        raise InputError(f"{key}: '{value}' must be a number from 0 to 1 (a fraction of the learning rate)")


def _boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InputError(f"{key}: '{value}' must be True or False")


def _file(what: str, auto: bool = False, also: tuple[str, ...] = ()) -> Callable[[str, Any], None]:
    """Empty, an existing file or folder (``auto`` also allowed when ``auto``; the words ``also``)."""

    def check(key: str, value: Any) -> None:
        if value is None or value == "" or (auto and str(value).lower() == "auto") or value in also:
            return
        if not os.path.exists(str(value)):
            raise MissingInputError(f"{key}: '{value}' not found; expected {what}")

    return check


POSITIVE_INT = _numeric(int, 0, above=True)


def _writable_folder(key: str, value: Any) -> None:
    """A folder that exists or can be made, and can be written (RecBole makes it when the trainer
    starts, after the data is read: a traceback then)."""
    folder = os.path.abspath(str(value))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{key}: '{value}' cannot be written ({existing} is not a writable folder)")


def _whole_numbers(key: str, value: Any) -> None:
    """A positive whole number or a non-empty list of them (RecBole's ``topk``)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or any(_number(v, int) is None or _number(v, int) < 1 for v in values):
        raise InputError(f"{key}: '{value}' must be a positive whole number or a list of them, e.g. [10] or [1, 5, 10]")


def _settings_dict(key: str, value: Any) -> None:
    """Empty, or settings by name (a yaml mapping: ``{epochs: 5}``)."""
    if value is not None and not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
        raise InputError(f"{key}: '{value}' must be settings by name, e.g. {{epochs: 5}} (or empty)")


OPTIONAL_POSITIVE_INT = _numeric(int, 0, optional=True, above=True)
OPTIONAL_POSITIVE_FLOAT = _numeric(float, 0, optional=True, above=True)

RULES: dict[str, Callable[[str, Any], None]] = {
    # RecBole's training settings
    "epochs": POSITIVE_INT,
    "seed": _numeric(int, 0),
    "topk": lambda key, value: _whole_numbers(key, value),
    "train_batch_size": POSITIVE_INT,
    "eval_batch_size": POSITIVE_INT,
    "learning_rate": _numeric(float, 0, above=True),
    "weight_decay": _numeric(float, 0),
    "eval_step": _numeric(int, 0),
    "stopping_step": POSITIVE_INT,
    "learner": lambda key, value: _choice(LEARNERS)(key, str(value).lower()),
    "enable_amp": _boolean,
    "enable_scaler": _boolean,
    # the plugin's data settings
    "protocol": _choice(("labeled", "recbole")),
    "train_rows_limit": OPTIONAL_POSITIVE_INT,
    "eval_rows_limit": OPTIONAL_POSITIVE_INT,
    "train_rows_sample": _choice(("recent", "random"), optional=True),
    "eval_rows_sample": _choice(("rows", "users"), optional=True),
    "full_sort_items": OPTIONAL_POSITIVE_INT,
    "warm_threshold": _numeric(int, 0),
    "cold_threshold": _numeric(int, 0),
    "MAX_ITEM_LIST_LENGTH": POSITIVE_INT,
    "resume": _file("a -last.pth checkpoint, auto or empty", auto=True),
    "checkpoint_dir": _writable_folder,
    # the LLM models
    "llm_path": _file("a local Hugging Face model folder or a .gguf file (empty: the default SmolLM2)"),
    "llm_dtype": _choice(DTYPES),
    "llm_compute_dtype": _choice(DTYPES, optional=True),
    "score_mode": _choice(SCORE_MODES),
    "lora_checkpoint": _file("a TALLRec/CoLLM checkpoint or its -adapter folder"),
    "cf_checkpoint": _file(f"a saved checkpoint of {'/'.join(CF_SOURCES)}, auto, or empty (T2)", auto=True),
    "cf_model": _choice(CF_SOURCES),
    "lora_r": POSITIVE_INT,
    "prompt_history_length": POSITIVE_INT,
    "cf_history_length": OPTIONAL_POSITIVE_INT,
    "max_prompt_tokens": POSITIVE_INT,
    "cie_embedding_size": POSITIVE_INT,
    "cie_hidden_factor": POSITIVE_INT,
    "cf_min_overlap": _numeric(float, 0),
    "cf_other_dataset": _boolean,
    "cf_model_settings": _settings_dict,
    "cie_learning_rate": OPTIONAL_POSITIVE_FLOAT,
    "cie_epochs": OPTIONAL_POSITIVE_INT,
    "lora_train_rows": OPTIONAL_POSITIVE_INT,
    "lora_epochs": OPTIONAL_POSITIVE_INT,
    "lora_learning_rate": OPTIONAL_POSITIVE_FLOAT,
    "lora_layers": OPTIONAL_POSITIVE_INT,
    "lower_store_mb": _numeric(float, 0, optional=True, hint="MB; 0 or empty: no store"),
    "min_lr_ratio": _fraction,
    "keep_best_stage": _boolean,
    "item_rate_prior": _numeric(float, 0),
    # A-LLMRec and CLLM4Rec: their first stage's own budget (the last stage: epochs, learning_rate)
    "align_epochs": OPTIONAL_POSITIVE_INT,
    "align_learning_rate": OPTIONAL_POSITIVE_FLOAT,
    "pretrain_epochs": OPTIONAL_POSITIVE_INT,
    "pretrain_learning_rate": OPTIONAL_POSITIVE_FLOAT,
    "project_train_rows": OPTIONAL_POSITIVE_INT,
    "candidate_num": _numeric(int, 2),
    "latent_size": POSITIVE_INT,
    "align_inputs": _choice(ALIGN_INPUTS),
    "align_size": POSITIVE_INT,
    "align_rows": OPTIONAL_POSITIVE_INT,
    "align_sub_representations": POSITIVE_INT,
    "align_temperature": _numeric(float, 0, above=True),
    "text_encoder_path": _file("auto, llm, or a local sentence-encoder (Hugging Face) folder", auto=True, also=("llm",)),
    "rank_by": _choice(RANK_BY),
    "max_new_tokens": POSITIVE_INT,
    "lambda_v": _numeric(float, 0),
    "gradient_accumulation_steps": OPTIONAL_POSITIVE_INT,
    "warmup_steps": _numeric(int, 0, optional=True),
    "share_prefixes": _boolean,
    "prefix_store_mb": _numeric(float, 0, optional=True, hint="MB; 0 or empty: no store"),
    "prefix_store_dtype": _choice(DTYPES),
    "prefix_grouped_batches": _boolean,
    "prefix_batch_size": POSITIVE_INT,
    "llm_batch_size": POSITIVE_INT,
}

# keys whose value may be the word auto (any case), kept as "auto" once checked: one spelling to match
AUTO_KEYS = ("cf_checkpoint", "resume", "text_encoder_path")


def validate(config: dict) -> None:
    """Check every key of ``config`` that has a rule, and that ``valid_metric`` is computed; the
    word auto is stored in one spelling (``AUTO``, ``Auto`` → ``auto``)."""
    for key, rule in RULES.items():
        if key in config:
            rule(key, config[key])
    for key in AUTO_KEYS:
        if isinstance(config.get(key), str) and config[key].lower() == "auto":
            config[key] = "auto"
    if "llm_compute_dtype" in config and config.get("enable_amp"):
        # one precision setting for the LLM models, applied by the model itself (training,
        # evaluation and the score/recommend commands alike)
        raise InputError("enable_amp: the LLM models set their precision with llm_compute_dtype "
                         f"({' | '.join(DTYPES)}); remove enable_amp")
    check_valid_metric(config)


def check_valid_metric(config: dict) -> None:
    """``valid_metric`` must be one of the metrics the run computes (RecBole would fail with a
    KeyError after the first training epoch)."""
    valid, metrics = config.get("valid_metric"), config.get("metrics")
    if not valid or not metrics:
        return
    name, _, k = str(valid).partition("@")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    topk = config.get("topk") or []
    topk = [topk] if isinstance(topk, int) else list(topk)
    if name.lower() not in [m.lower() for m in metrics] or (k and _number(k, int) not in topk):
        computed = [f"{m}@{t}" for m in metrics for t in topk] if k else metrics
        raise InputError(f"valid_metric: '{valid}' is not computed by this run (metrics: {metrics}, topk: {topk}); "
                         f"choose one of {', '.join(map(str, computed[:8]))}")


def optional_positive(config, key: str, kind: type) -> int | float | None:
    """``config[key]`` as a positive ``kind``, None when empty (validated by :func:`validate`)."""
    value = config[key]
    return None if value is None else kind(value)


# ---- What one run's settings pass to another: the data settings the ``cf_checkpoint: auto`` model is
# trained with and its cache file (:func:`cf_settings`, :func:`cache_path`), and the settings an
# adapter config records to rebuild its run (:func:`given_settings`). With ``auto`` the runner
# (:func:`recbole_collm.quick_start.auto_cf_checkpoint`) trains the model named by ``cf_model`` before
# the LLM model is built: its own yaml's settings plus the user's data settings, never the LLM run's
# command line or training settings; the checkpoint's name is derived from everything that shaped it
# (every resolved setting and the data files' bytes), so every later run that would train the same
# model reuses it.
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
