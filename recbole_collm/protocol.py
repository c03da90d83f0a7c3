"""What the paper's labeled protocol feeds each kind of model, decided from the model class and its
settings alone (before any data is read).

The protocol is pointwise CTR on labeled, time-ordered rows (liked = 1, disliked = 0), evaluated
by AUC on labeled valid/test rows. A model trained on labels (every context-aware model, the
plugin's own models, RecBole's label readers such as NeuMF or DIN) sees every labeled train row.
An implicit-feedback model (BPR, LightGCN, EASE, MultiVAE, SASRec, ...) learns from what it reads
as interactions: on this protocol those are the liked rows only — a dislike is not an interaction
— and a pairwise one draws RecBole's uniform negative per positive, as RecBole trains it. Its
predictions are then scored on the same labeled rows as every other model's.

Knowledge-aware models need a knowledge graph and RecBole's knowledge dataset: they run on
RecBole's own protocol only.
"""
from __future__ import annotations

from recbole.utils import InputType, ModelType

from recbole_collm.errors import InputError

# RecBole 1.2.1's general and sequential models whose loss reads the label field (BCE on labels):
# on this protocol they learn from every labeled row, like the context-aware models
# (tests/test_protocol.py checks this list against RecBole's source)
LABEL_READERS = frozenset({"NeuMF", "DMF", "FISM", "NAIS", "NNCF", "DIN", "DIEN"})
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
    if model_class.type == ModelType.DECISIONTREE:
        raise InputError(f"model {model}: RecBole's decision-tree models (lightgbm, xgboost) are not supported by the plugin; "
                         "run it with recbole.quick_start.run_recbole")
