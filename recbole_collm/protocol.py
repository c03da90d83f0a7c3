"""What the paper's labeled protocol feeds each kind of model, decided from the model class and its
settings alone (before any data is read).

The protocol is pointwise CTR on labeled, time-ordered rows (liked = 1, disliked = 0), evaluated
by AUC on labeled valid/test rows. A model trained on labels (every context-aware model, the
plugin's own models, RecBole's label readers such as NeuMF or DIN) sees every labeled train row.
An implicit-feedback model (BPR, LightGCN, EASE, MultiVAE, SASRec, ...) learns from what it reads
as interactions: on this protocol those are the liked rows only — a dislike is not an interaction
— and a pairwise one draws RecBole's uniform negative per positive, as RecBole trains it. Its
predictions are then scored on the same labeled rows as every other model's.

Refused, with one line before any data is read: knowledge-aware models (a knowledge graph and
RecBole's knowledge dataset), models that cannot score a labeled row (RecBole's CPR models rank the
full catalogue only; DIEN needs RecBole's own dataset class) unless ``protocol: recbole``, and
models whose item features or extra files the dataset lacks.
"""
from __future__ import annotations

import importlib.util
import os

from recbole.utils import InputType, ModelType

from recbole_collm.errors import InputError

# RecBole 1.2.1's general and sequential models whose loss reads the label field (BCE on labels):
# on this protocol they learn from every labeled row, like the context-aware models
# (tests/test_protocol.py checks this list against RecBole's source)
LABEL_READERS = frozenset({"NeuMF", "DMF", "FISM", "NAIS", "NNCF", "DIN", "DIEN"})
# RecBole 1.2.1's models that cannot score the plugin's labeled rows (tests/test_recbole_inside.py
# checks them against RecBole's source): the CPR models' ``predict`` is disabled (full-sort ranking
# only), and three train on what a dataset class of their own builds (DIEN: sampled negative
# histories; GRU4RecKG, KSR: knowledge-graph entity sequences)
FULL_SORT_ONLY = frozenset({"GRU4RecCPR", "SASRecCPR"})
OWN_DATASET = frozenset({"DIEN", "GRU4RecKG", "KSR"})
# packages a RecBole model imports only once it trains (not RecBole's own requirements)
NEEDS_PACKAGE = {"NCL": ("faiss", "faiss-cpu")}
# RecBole's own negative sampling for pairwise models (its overall.yaml default)
RECBOLE_NEGATIVES = {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False, "candidate_num": 0}


def is_labeled(config) -> bool:
    """Both evaluation phases score labeled rows (the plugin's protocol), not ranked candidates."""
    mode = config["eval_args"]["mode"]
    modes = mode.values() if isinstance(mode, dict) else [mode]
    return all(m == "labeled" for m in modes)


def reads_labels(model_class: type) -> bool:
    """Whether the model is trained on the label (every labeled train row) rather than on
    interactions (the liked rows only)."""
    if model_class.type == ModelType.CONTEXT:
        return True
    return getattr(model_class, "input_type", None) == InputType.POINTWISE and model_class.__name__ in LABEL_READERS


def implicit(model_class: type) -> bool:
    """A RecBole general, sequential or traditional model that learns from interactions."""
    return model_class.type in (ModelType.GENERAL, ModelType.SEQUENTIAL, ModelType.TRADITIONAL) and not reads_labels(model_class)


def pairwise_defaults(model_class: type) -> dict:
    """The settings the labeled protocol gives a model beneath the user's: RecBole's negative
    sampler for a pairwise implicit-feedback model (the plugin's overall.yaml has none)."""
    if implicit(model_class) and getattr(model_class, "input_type", None) == InputType.PAIRWISE:
        return {"train_neg_sample_args": dict(RECBOLE_NEGATIVES)}
    return {}


def check_runs(model: str, model_class: type, config) -> None:
    """One line, before any data is built, for a model the chosen protocol cannot run."""
    if model_class.type == ModelType.KNOWLEDGE:
        raise InputError(
            f"model {model}: a knowledge-aware model needs a knowledge graph ({config['dataset']}.kg and .link files) "
            f"and RecBole's knowledge dataset; run it with recbole.quick_start.run_recbole on such a dataset"
        )
    if is_labeled(config) and model in FULL_SORT_ONLY:
        raise InputError(f"model {model}: RecBole's {model} ranks the full catalogue only (its predict is disabled), "
                         "so it cannot score labeled rows; run it with --protocol=recbole")
    if is_labeled(config) and model in OWN_DATASET:
        raise InputError(f"model {model}: RecBole's {model} trains on what its own dataset class builds "
                         f"(RecBole's {model}Dataset); run it with --protocol=recbole")
    if model in NEEDS_PACKAGE and importlib.util.find_spec(NEEDS_PACKAGE[model][0]) is None:
        module, wheel = NEEDS_PACKAGE[model]
        raise InputError(f"model {model}: needs the package '{module}' (pip install {wheel}), which is not installed")
    _check_item_features(model, config)
    for suffix in config.get("additional_feat_suffix") or []:
        path = os.path.join(config["data_path"], f"{config['dataset']}.{suffix}")
        if not os.path.isfile(path):
            raise InputError(f"model {model}: reads {path} (additional_feat_suffix: {suffix}, e.g. pretrained entity "
                             f"vectors), which is not there")


def _check_item_features(model: str, config) -> None:
    """A model that reads item features (``selected_features``, S3Rec's ``item_attribute``) the
    dataset's ``load_col.item`` does not load fails after the data is read (a KeyError): say so."""
    wanted = config.get("selected_features") or []
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    if config.get("item_attribute"):
        wanted.append(config["item_attribute"])
    loaded = ((config.get("load_col") or {}).get("item"))
    missing = [f for f in wanted if loaded is not None and f not in loaded]
    if missing:
        raise InputError(f"model {model}: reads the item features {missing} (selected_features / item_attribute), "
                         f"which load_col.item does not load ({loaded}); add them to load_col.item")
