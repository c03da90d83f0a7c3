"""Config that layers the plugin's yaml files over RecBole's, the way RecBole-GNN does."""
from __future__ import annotations

import difflib
import functools
import sys
from pathlib import Path

import torch
import yaml
from recbole.config.configurator import Config as RecBoleConfig
from recbole.utils import argument_list

from recbole_collm import compat, protocol, settings
from recbole_collm.errors import InputError, MissingInputError, first_line
from recbole_collm.utils import get_model


def _properties_dir() -> Path:
    """The plugin's yaml defaults: the copy a wheel install carries inside the package (setup.py
    ships the top-level ``properties/`` there as package data), else the checkout's own
    ``properties/`` beside the package (a clone, or an editable install)."""
    package = Path(__file__).resolve().parent
    packaged = package / "properties"
    return packaged if packaged.is_dir() else package.parent / "properties"


PROPERTIES_DIR = _properties_dir()
RECBOLE_EXAMPLE_DIR = Path(__import__("recbole").__file__).resolve().parent / "dataset_example"


def plugin_yaml_files(model: str, model_class: type, dataset: str) -> list[Path]:
    """The plugin's yaml files for a model/dataset, lowest precedence first. A plugin model that
    subclasses another (TALLRec, ICL of CoLLM) gets its parents' yaml first."""
    names = [
        cls.__name__
        for cls in reversed(model_class.__mro__)
        if cls.__module__.startswith("recbole_collm.") and cls.__name__ != model
    ]
    files = [PROPERTIES_DIR / "overall.yaml"]
    files += [PROPERTIES_DIR / "model" / f"{name}.yaml" for name in [*names, model]]
    files.append(PROPERTIES_DIR / "dataset" / f"{dataset}.yaml")
    return [f for f in files if f.is_file()]


# keys RecBole reads at run time without any yaml declaring them
RUNTIME_KEYS = {"model", "dataset", "config_files", "local_rank", "world_size", "nproc", "offset", "ip", "port",
                "gpu_id", "resume", "strict_config"}


def known_keys(internal: dict) -> set[str]:
    """Every key RecBole or the plugin defines: the loaded yaml files, RecBole's argument lists,
    all RecBole and plugin yaml files (a dataset key is valid with any model)."""
    return set(internal) | _static_known_keys()


@functools.lru_cache(maxsize=1)
def _static_known_keys() -> frozenset[str]:
    """The model-independent part of :func:`known_keys`, read from disk once per process."""
    keys = set(RUNTIME_KEYS)
    for name in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        keys |= set(getattr(argument_list, name))
    recbole_properties = RECBOLE_EXAMPLE_DIR.parent / "properties"
    for folder in (recbole_properties / "dataset", recbole_properties / "quick_start_config", PROPERTIES_DIR / "dataset"):
        for file in folder.glob("*.yaml"):
            keys |= set(yaml.safe_load(file.read_text()) or {})
    keys |= set(yaml.safe_load((recbole_properties / "overall.yaml").read_text()) or {})
    return frozenset(keys)


class Config(RecBoleConfig):
    """RecBole's Config plus the plugin's ``properties/`` and plugin model lookup.

    Precedence, lowest first: RecBole's own yaml files, ``properties/overall.yaml``,
    ``properties/model/<model>.yaml``, ``properties/dataset/<dataset>.yaml``, then the user's
    config files, config dict and command line (RecBole's order for the external ones). Every
    value is then checked against :mod:`recbole_collm.settings`.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_line: bool = True):
        # cmd_line=False: a Config of exactly the given settings (RecBole's reads sys.argv always;
        # the collaborative model that ``cf_checkpoint: auto`` trains must not take the LLM run's)
        self._read_cmd_line = cmd_line
        config_file_list = [resolve_config_file(f) for f in config_file_list or []] or None
        super().__init__(model, dataset, config_file_list, config_dict)
        if self.final_config_dict.get("strict_config", True):
            self._check_unknown_keys()
        settings.validate(self.final_config_dict)
        protocol.check_runs(self.model, self.model_class, self.final_config_dict)
        if "stage" in self.final_config_dict and hasattr(self.model_class, "stage_plan"):
            self.model_class.stage_plan(self.final_config_dict["stage"])  # each model declares its own stages

    def _check_unknown_keys(self) -> None:
        """A typo in a setting is an error naming the key and the closest known one, not a
        silently ignored value."""
        known = known_keys(self.internal_config_dict)
        sources = [("command line", self.cmd_config_dict), ("config dict", self.variable_config_dict),
                   ("config file", self.file_config_dict)]
        for where, given in sources:
            for key in given:
                if key in known:
                    continue
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise InputError(
                    f"{where}: unknown key '{key}' for model {self.model}{hint} (set strict_config: False to allow it)"
                )

    def _load_cmd_line(self):
        if not self._read_cmd_line:
            return {}
        seen = {}
        for arg in sys.argv[1:]:  # RecBole raises a SyntaxError (a traceback) for this
            key, equals, value = arg[2:].partition("=")
            if arg.startswith("--") and equals and seen.setdefault(key, value) != value:
                raise InputError(f"command line: --{key} given twice ({seen[key]} and {value}); give it once")
        return super()._load_cmd_line()

    def _load_config_files(self, file_list):
        """RecBole's, with a file that is not YAML (or not a mapping) named with its line."""
        merged = {}
        for file in file_list or []:
            with open(file, encoding="utf-8") as f:
                try:
                    values = yaml.load(f.read(), Loader=self.yaml_loader)
                except yaml.YAMLError as err:
                    mark = getattr(err, "problem_mark", None)
                    where = f", line {mark.line + 1}" if mark is not None else ""
                    problem = getattr(err, "problem", None) or first_line(err)
                    raise InputError(f"{file}{where}: not valid YAML ({problem})") from None
            if values is not None and not isinstance(values, dict):
                raise InputError(f"{file}: expected 'key: value' lines, found a {type(values).__name__}")
            merged.update(values or {})
        return merged

    def compatibility_settings(self) -> None:
        # RecBole's version reads np.float_ etc., which numpy 2 removed.
        compat.patch_numpy_aliases()

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            if "model" not in self.external_config_dict:
                raise KeyError("model: not given; pass --model=NAME, a config file or a config dict")
            model = self.external_config_dict["model"]
        if isinstance(model, str):
            model_class = get_model(model)
        else:
            model_class, model = model, model.__name__
        if dataset is None:
            if "dataset" not in self.external_config_dict:
                raise KeyError("dataset: not given; pass --dataset=NAME, a config file or a config dict")
            dataset = self.external_config_dict["dataset"]
        return model, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        if self.external_config_dict.get("protocol") == "recbole":
            # RecBole's own settings, untouched by the plugin's yaml: RecBole's protocol
            self.internal_config_dict["protocol"] = "recbole"
            if {**self.internal_config_dict, **self.external_config_dict}.get("loss_type") == "CE":
                self.internal_config_dict["train_neg_sample_args"] = None  # RecBole refuses sampling with CE
            return
        model_mode = None
        for file in plugin_yaml_files(model, model_class, dataset):
            before = self.internal_config_dict.get("eval_args")
            config_dict = self._update_internal_config_dict(str(file))
            if file.parent.name == "dataset" and config_dict:
                self.parameters["Dataset"] += [
                    k for k in config_dict if k not in self.parameters["Dataset"]
                ]
            if file.parent.name == "model" and config_dict and "mode" in (config_dict.get("eval_args") or {}):
                model_mode = config_dict["eval_args"]["mode"]
                self.internal_config_dict["eval_args"] = before  # the split stays the one set before
        if model_mode is not None:
            # a model that only ranks (A-LLMRec: candidate sets, CLLM4Rec: full sort) keeps its
            # evaluation mode over the dataset yaml's, which owns the split
            self.internal_config_dict["eval_args"] = {**self.internal_config_dict["eval_args"], "mode": model_mode}
        self._apply_model_settings(model, model_class)
        self.internal_config_dict.update(protocol.pairwise_defaults(model_class))
        # a plugin yaml may not change what kind of model this is
        self.internal_config_dict["MODEL_TYPE"] = model_class.type

    def _apply_model_settings(self, model: str, model_class: type) -> None:
        """A dataset yaml's ``model_settings: {MF: {embedding_size: 256}, ...}``: settings one
        model takes on this dataset only (the official CoLLM CF sizes differ per dataset). They
        rank with the dataset yaml, above the model yaml, below the user's settings."""
        per_model = self.internal_config_dict.get("model_settings") or {}
        names = [cls.__name__ for cls in reversed(model_class.__mro__) if cls.__name__ in per_model]
        for name in dict.fromkeys([*names, model]):
            self.internal_config_dict.update(per_model.get(name) or {})

    def _set_default_parameters(self):
        if "topk" in self.final_config_dict:  # RecBole checks it here with a ValueError of its own
            settings.RULES["topk"]("topk", self.final_config_dict["topk"])
        super()._set_default_parameters()
        self.final_config_dict["data_path"] = resolve_data_path(
            self.final_config_dict["data_path"], self.dataset
        )

    def _init_device(self):
        # RecBole's DDP path hard-codes NCCL and CUDA devices; on a machine without CUDA use gloo
        # on the CPU instead of failing inside init_process_group.
        if "local_rank" in self.final_config_dict and not torch.cuda.is_available():
            cfg = self.final_config_dict
            gpu_id = cfg.get("gpu_id")
            cfg["gpu_id"] = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
            torch.distributed.init_process_group(
                backend="gloo",
                rank=cfg["local_rank"] + cfg["offset"],
                world_size=cfg["world_size"],
                init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
            )
            cfg["device"] = torch.device("cpu")
            cfg["single_spec"] = False
            if cfg["local_rank"] != 0:
                cfg["state"] = "error"
                cfg["show_progress"] = False
                cfg["verbose"] = False
            return
        super()._init_device()


def resolve_config_file(name: str | Path) -> str:
    """A config file as given when it exists, else the plugin's named setting of that name
    (``gpu.yaml``, ``split/global_time.yaml``: files under ``properties/``, so
    they work from any folder and from an installed wheel). Neither: one error line."""
    if Path(name).is_file():
        return str(name)
    named = PROPERTIES_DIR / name
    if not Path(name).is_absolute() and named.is_file() and PROPERTIES_DIR in named.resolve().parents:
        return str(named)
    shipped = sorted(str(f.relative_to(PROPERTIES_DIR)) for f in [*PROPERTIES_DIR.glob("*.yaml"), *PROPERTIES_DIR.glob("split/*.yaml")]
                     if f.name != "overall.yaml")
    raise MissingInputError(f"config_files: '{name}' not found (a yaml path, or a named setting: {', '.join(shipped)})")


def resolve_data_path(data_path: str, dataset: str) -> str:
    """Where the dataset's atomic files are: ``data_path`` (relative to the working directory, as
    RecBole reads it) if it holds them, else RecBole's bundled examples (ml-100k ships inside
    RecBole's wheel). RecBole itself would try to download a missing dataset; this machine, and
    many users', cannot.
    """
    for candidate in (Path(data_path), RECBOLE_EXAMPLE_DIR / dataset):
        if candidate.is_dir() and any(candidate.glob(f"{dataset}*.inter")):
            return str(candidate.resolve())  # absolute: checkpoints must not depend on the cwd
    return data_path  # CollmDataset raises the clear error naming this path
