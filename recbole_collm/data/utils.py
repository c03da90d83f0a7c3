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


def create_dataset(config):
    """``CollmDataset`` for labeled (context-type) models, RecBole's dataset for the others."""
    if config["MODEL_TYPE"] == ModelType.CONTEXT:
        return CollmDataset(config)
    return create_recbole_dataset(config)


def is_ranking(config) -> bool:
    """Candidate ranking (uniN/popN/full) for a labeled model, rather than labeled rows."""
    return config["MODEL_TYPE"] == ModelType.CONTEXT and any(eval_mode(config, p) != "labeled" for p in ("valid", "test"))


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
