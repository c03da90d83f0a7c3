"""Dataset and loader creation: RecBole's ``create_dataset`` / ``data_preparation`` for the plugin.

Labeled (context-type) models get :class:`CollmDataset`; ranking modes (uniN / popN / full) get
per-query candidate loaders instead of RecBole's per-user ones; ``prefix_grouped_batches`` gets
the prefix-grouped train loader.
"""
from __future__ import annotations

from recbole.data import create_dataset as create_recbole_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.utils import EvaluatorType, ModelType

from recbole_collm.data.dataloader import (
    CandidateEvalDataLoader,
    PrefixGroupedTrainDataLoader,
    RowFullSortEvalDataLoader,
    eval_mode,
)
from recbole_collm.data.dataset import CollmDataset
from recbole_collm.errors import InputError
from recbole_collm.protocol import is_labeled, reads_labels


def uses_labeled_rows(config) -> bool:
    """Whether the run's data is the plugin's labeled dataset (:func:`create_dataset`)."""
    return config["MODEL_TYPE"] == ModelType.CONTEXT or is_labeled(config)


def create_dataset(config, token_maps: dict | None = None):
    """``CollmDataset`` for the labeled protocol — every context-type model, and RecBole's general
    and sequential models evaluated on labeled rows (:mod:`recbole_collm.protocol`) — and
    RecBole's own dataset for RecBole's protocol (its ranking evaluation). ``token_maps``: a
    checkpoint's user/item tokens in id order (:class:`CollmDataset`)."""
    if uses_labeled_rows(config):
        return CollmDataset(config, token_maps)
    if token_maps:
        raise InputError(f"token_maps: only the plugin's labeled dataset takes a checkpoint's ids, not {config['model']}'s")
    return create_recbole_dataset(config)


def is_ranking(config) -> bool:
    """Candidate ranking (uniN/popN/full) for a labeled model, rather than labeled rows."""
    return config["MODEL_TYPE"] == ModelType.CONTEXT and any(eval_mode(config, p) != "labeled" for p in ("valid", "test"))


def _check_both_labels(config, data, phase: str, why: str) -> None:
    """A split whose rows all carry one label would train nothing or leave AUC undefined (the run
    would end in a missing best checkpoint): one line naming the split instead."""
    if data is None or not len(data._dataset):
        return
    labels = data._dataset.inter_feat[config["LABEL_FIELD"]]
    positives = int((labels > 0.5).sum())
    if positives in (0, len(labels)):
        raise InputError(f"{config['dataset']}: the {phase} split's {len(labels)} row(s) all have "
                         f"{config['LABEL_FIELD']} {int(positives > 0)}; both 0 and 1 are needed ({why})")


def data_preparation(config, dataset):
    """RecBole's ``data_preparation``; for ranking modes the valid/test loaders are replaced by
    per-query candidate loaders (RecBole's group all rows of a user into one ranking, which is
    wrong when each row has its own history)."""
    if is_ranking(config) and config["eval_type"] != EvaluatorType.RANKING:
        raise InputError(
            f"metrics: {config['metrics']} are value metrics but eval_args.mode ranks candidates; "
            "use ranking metrics, e.g. metrics: [Hit, NDCG, MRR], valid_metric: NDCG@10"
        )
    train_data, valid_data, test_data = recbole_data_preparation(config, dataset)
    if uses_labeled_rows(config):
        if reads_labels(config.model_class):  # an implicit-feedback model trains on the liked rows alone
            _check_both_labels(config, train_data, "train", "the model learns from both")
        if not is_ranking(config):
            for phase, data in (("valid", valid_data), ("test", test_data)):
                _check_both_labels(config, data, phase, "AUC compares the two; raise eval_rows_limit or check the split")
    if config["prefix_grouped_batches"] and config["shuffle"] and config["single_spec"]:
        train_data = PrefixGroupedTrainDataLoader(config, train_data._dataset, train_data._sampler, shuffle=True)
    if not is_ranking(config):
        return train_data, valid_data, test_data
    loaders = []
    for phase, data in (("valid", valid_data), ("test", test_data)):
        mode = eval_mode(config, phase)
        if mode == "labeled":
            raise InputError(f"eval_args.mode: '{phase}' is labeled while the other phase ranks; use one kind for both")
        cls = RowFullSortEvalDataLoader if mode == "full" else CandidateEvalDataLoader
        loaders.append(cls(config, data._dataset, dataset, phase, train_data._dataset.train_item_count))
    return train_data, loaders[0], loaders[1]
