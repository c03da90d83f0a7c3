"""Small, tested shims that let RecBole 1.2.1 (and every transformers 5.x) run on a modern stack.

Each patch is applied once, when ``recbole_collm`` is imported, and is idempotent; the
transformers helpers are called where a decoder runs with a key/value cache.
docs/compatibility.md lists every breakage and whether it is handled by a pin or here.
"""
from __future__ import annotations

import functools
import inspect
import types
from typing import Any

import numpy as np

from recbole_collm.errors import InputError

# numpy 2 removed these aliases; RecBole's Config.compatibility_settings reads them and
# RecBole's code uses the old spellings (np.float, np.long, np.bool) elsewhere.
_NUMPY_ALIASES = {
    "float_": "float64",
    "complex_": "complex128",
    "unicode_": "str_",
    "bool": "bool_",
    "int": "int_",
    "float": "float64",
    "complex": "complex128",
    "object": "object_",
    "str": "str_",
    "long": "int_",
    "unicode": "str_",
}


def patch_numpy_aliases() -> None:
    """Restore the removed numpy aliases RecBole reads (only those that are missing)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns on hasattr(np, "object") etc.
        for alias, target in _NUMPY_ALIASES.items():
            if alias not in np.__dict__:
                setattr(np, alias, getattr(np, target))


def patch_scipy_dok_update() -> None:
    """scipy >= 1.13 renamed ``dok_matrix._update`` to the validated ``update``; RecBole's graph
    models (LightGCN, NGCF, NCL, GCMC, SpectralCF) still call ``_update``."""
    import scipy.sparse as sp

    for cls in (sp.dok_matrix, getattr(sp, "dok_array", None)):
        if cls is not None and not hasattr(cls, "_update"):
            cls._update = cls.update


def keep_anomaly_detection_off() -> None:
    """RecBole's ``sequential_recommender/sine.py`` calls ``torch.autograd.set_detect_anomaly(True)``
    when imported, and importing any RecBole sequential model (SASRec) imports it: every later
    backward pass in the process then records and checks tracebacks, which slows every later
    training in the process (docs/compatibility.md). Import it now, then put the setting back as it
    was."""
    import torch

    before = torch.is_anomaly_enabled()
    import recbole.model.sequential_recommender  # noqa: F401  (runs sine.py's module code once)

    torch.autograd.set_detect_anomaly(before)


def patch_exhaustive_search_rng() -> None:
    """hyperopt >= 0.2.7 samples with numpy's ``Generator`` (``rng.integers``); RecBole 1.2.1's
    ``exhaustive_search`` (``HyperTuning``'s default algorithm) hands it a legacy ``RandomState``,
    which fails on the first trial. The module sees a numpy whose ``random.RandomState`` makes a
    ``Generator`` (the same seed, the same grid; RecBole reads nothing else from it)."""
    import recbole.trainer.hyper_tuning as hyper_tuning

    if isinstance(hyper_tuning.np, types.ModuleType) and hyper_tuning.np.__name__ == "recbole_collm.compat.numpy":
        return
    shim = types.ModuleType("recbole_collm.compat.numpy")
    shim.__dict__.update({k: v for k, v in np.__dict__.items() if k != "__name__"})
    random = types.ModuleType("recbole_collm.compat.numpy.random")
    random.__dict__.update({k: v for k, v in np.random.__dict__.items() if k != "__name__"})
    random.RandomState = np.random.default_rng
    shim.random = random
    hyper_tuning.np = shim


def race_free_ensure_dir() -> None:
    """RecBole's ``ensure_dir`` checks, then creates: two DDP processes building their trainers at
    once both see no folder and the second ``makedirs`` fails (``FileExistsError``). A folder that
    cannot be made (read-only disk, a file in the way) is one error naming it."""
    import os

    import recbole.trainer.trainer as recbole_trainer
    import recbole.utils as recbole_utils
    import recbole.utils.utils as recbole_utils_utils

    def ensure_dir(dir_path: str) -> None:
        try:
            os.makedirs(dir_path, exist_ok=True)
        except OSError as err:  # one line naming the folder, not a traceback
            raise InputError(f"{dir_path}: cannot make this folder ({err.strerror})") from None

    for module in (recbole_utils_utils, recbole_utils, recbole_trainer):
        module.ensure_dir = ensure_dir


class _TrustedTorch(types.ModuleType):
    """``torch`` as RecBole's checkpoint-reading modules see it: ``torch.load`` unpickles fully
    (``weights_only=False``), PyTorch's default before 2.6. RecBole's checkpoints pickle its Config,
    which the weights-only reader refuses; these modules read only files RecBole itself wrote (a
    run's best model, a resume file, a pretrained model the user names). Everything else is torch."""

    def __getattr__(self, name: str) -> Any:
        import torch

        return getattr(torch, name)

    @staticmethod
    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        kwargs.setdefault("weights_only", False)
        return torch.serialization.load(f, *args, **kwargs)  # torch.load itself, even while swapped


# RecBole's modules that read its own checkpoints with torch.load: the trainer (best model, resume)
# and the models that start from a pretrained RecBole model
CHECKPOINT_READERS = (
    "recbole.trainer.trainer",
    "recbole.model.general_recommender.convncf",
    "recbole.model.general_recommender.nais",
    "recbole.model.general_recommender.neumf",
    "recbole.model.general_recommender.ract",
    "recbole.model.context_aware_recommender.kd_dagfm",
    "recbole.model.sequential_recommender.s3rec",
)


def _trust_module(module: types.ModuleType) -> None:
    module.torch = _TrustedTorch("torch")


def _trust_quick_start(module: types.ModuleType) -> None:
    """RecBole's ``load_data_and_model`` imports torch inside the function: it runs with a
    ``torch.load`` that unpickles fully for its own duration (one thread reads a checkpoint)."""
    original = module.load_data_and_model
    if getattr(original, "_recbole_collm_trusted", False):
        return

    @functools.wraps(original)
    def load_data_and_model(model_file):
        import torch

        weights_only_load = torch.load
        torch.load = _TrustedTorch.load
        try:
            return original(model_file)
        finally:
            torch.load = weights_only_load

    load_data_and_model._recbole_collm_trusted = True
    module.load_data_and_model = load_data_and_model


def trust_recbole_checkpoints() -> None:
    """RecBole reads its checkpoints with ``torch.load(path)``, which PyTorch >= 2.6 refuses
    (``weights_only``): RecBole's ``run_recbole`` ends in a traceback after training, and its
    ``load_data_and_model`` cannot read any checkpoint. Each module that reads them is given
    :class:`_TrustedTorch` when it is imported (now, if it already is); RecBole's quick start is
    never imported here (it imports ray)."""
    import wrapt

    for name in CHECKPOINT_READERS:
        wrapt.register_post_import_hook(_trust_module, name)
    wrapt.register_post_import_hook(_trust_quick_start, "recbole.quick_start.quick_start")


@functools.lru_cache(maxsize=None)
def _cache_argument(decoder_class: type) -> str:
    params = inspect.signature(decoder_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(decoder: Any, cache: Any) -> dict:
    """The decoder's key/value-cache argument under the name its transformers release reads:
    later 5.x releases renamed ``past_key_values`` to ``cache`` (the old name warns on every
    forward and goes in 5.40); earlier 5.x releases know only ``past_key_values``."""
    return {_cache_argument(type(decoder)): cache}


def output_cache(out: Any) -> Any:
    """The key/value cache a decoder returned, under either name (see :func:`cache_kwargs`)."""
    return out["cache"] if "cache" in out else out["past_key_values"]


def apply() -> None:
    """Apply every shim; safe to call more than once."""
    patch_numpy_aliases()
    patch_scipy_dok_update()
    keep_anomaly_detection_off()
    patch_exhaustive_search_rng()
    race_free_ensure_dir()
    trust_recbole_checkpoints()
