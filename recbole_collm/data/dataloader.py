"""The plugin's data loaders.

Ranking evaluation for the labeled (CTR-style) models: every positive valid/test row is a query
with its own history; its target is ranked against a candidate set, and RecBole's evaluator
computes Hit@K (HR), NDCG@K, MRR@K.

- ``mode: uniN`` / ``popN``: N negatives per query, drawn once with a generator seeded by
  ``seed`` (uniform, or by train popularity) among items the user never interacted with. The
  sets depend only on the data and the seed, so every model is ranked on the same candidates.
- ``mode: full``: all items, or the ``full_sort_items`` most popular train items (a capped
  catalogue: a target outside it is a miss), scored through ``full_sort_predict``.

Prefix-grouped training batches: rows whose prompts share a prefix (the same recent history)
land in the same batch, so the shared-prefix engine encodes that prefix once for all of them —
with its exact summed gradient in the stages where the prefix trains (LoRA, one step).
Order per epoch: the groups in a random order, the rows of each group in a random order, then cut
into batches of ``train_batch_size`` (a large group spans batches, small ones share one). Both
draws use the loader's own seeded generator, whose state the trainer saves in its resume
checkpoints, so a resumed run sees the same batches.
"""
from __future__ import annotations

from logging import getLogger

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader
from recbole.data.dataloader.general_dataloader import TrainDataLoader
from recbole.data.interaction import Interaction
from torch.utils.data import DataLoader, Sampler

from recbole_collm.data.sampling import capped_items, sample_candidates, user_item_sets


def eval_mode(config, phase: str) -> str:
    """``eval_args.mode`` of ``phase``: labeled, uniN, popN or full."""
    return str(config["eval_args"]["mode"][phase])


def _queries(config, split):
    """The positive rows of a split (label-0 rows are not ranking queries)."""
    label = split.inter_feat[config["LABEL_FIELD"]]
    return split.copy(split.inter_feat[label > 0.5])


CANDIDATES_FIELD = "candidate_id_list"  # each ranked row's query's whole candidate set


class CandidateEvalDataLoader(AbstractDataLoader):
    """``uniN``/``popN``: yields ``(rows × candidates, row_idx, positive_u, positive_i)``, the
    form RecBole's trainer ranks (one score-matrix row per query). Every row also carries its
    query's candidate set (``candidate_id_list``, in :func:`sample_candidates`' seeded random
    order): a model whose prompt lists the candidates (A-LLMRec) reads it there."""

    def __init__(self, config, split, full_dataset, phase: str, train_item_count: np.ndarray):
        split = _queries(config, split)
        mode = eval_mode(config, phase)
        num = int(mode[3:])
        uid, iid = full_dataset.uid_field, full_dataset.iid_field
        interacted = user_item_sets(full_dataset.inter_feat[uid].numpy(), full_dataset.inter_feat[iid].numpy(), full_dataset.user_num)
        weights = np.asarray(train_item_count, dtype=np.float64) if mode.startswith("pop") else None
        seed = int(config["seed"]) + (1 if phase == "valid" else 2)
        self.candidates = sample_candidates(
            split.inter_feat[uid].numpy(), split.inter_feat[iid].numpy(), interacted, full_dataset.item_num, num, weights, seed
        )
        self.sample_size = len(split)
        getLogger().info(f"{phase}: {len(split)} ranking queries, {mode} candidates (seed {seed})")
        super().__init__(config, split, None, shuffle=False)

    def _init_batch_size_and_step(self):
        per_query = self.candidates.shape[1]
        self.step = max(1, int(self.config["eval_batch_size"]) // per_query)
        self.set_batch_size(self.step * per_query)

    def collate_fn(self, index):
        index = np.array(index)
        rows = self._dataset[index]
        candidates = torch.from_numpy(self.candidates[index])
        queries, per_query = candidates.shape
        batch = rows.repeat_interleave(per_query)
        batch.update(Interaction({self._dataset.iid_field: candidates.reshape(-1),
                                  CANDIDATES_FIELD: candidates.repeat_interleave(per_query, dim=0)}))
        row_idx = torch.arange(queries).repeat_interleave(per_query)
        return batch, row_idx, torch.arange(queries), rows[self._dataset.iid_field]


class RowFullSortEvalDataLoader(FullSortEvalDataLoader):
    """``full``: one query per positive row (with the row's own history), ranked by the model's
    ``full_sort_predict`` over the :func:`capped_items` catalogue. A subclass of RecBole's, so
    RecBole's trainer takes its full-sort path, which sets the masked items to −inf: the items the
    user already has — every item of the user in the earlier splits (train for valid, train and
    valid for test: RecBole's own rule) and the row's history (earlier positives of its own split).
    A target the user had already is masked too, as in RecBole: unmasking it alone would point at it."""

    def __init__(self, config, split, full_dataset, phase: str, train_item_count: np.ndarray):
        split = _queries(config, split)
        self.uid_field, self.iid_field = split.uid_field, split.iid_field
        self.is_sequential = True  # per-row queries, RecBole's sequential layout
        self.sample_size = len(split)
        self.items = capped_items(config, train_item_count)
        earlier = full_dataset.split_pairs[: 1 if phase == "valid" else 2]
        had = user_item_sets(np.concatenate([u for u, _ in earlier]), np.concatenate([i for _, i in earlier]), full_dataset.user_num)
        seq, length = split.inter_feat[self.iid_field + config["LIST_SUFFIX"]], split.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]]
        self.masked = [np.array(sorted(had[user] | set(s[:n])), dtype=np.int64)
                       for user, s, n in zip(split.inter_feat[self.uid_field].tolist(), seq.tolist(), length.tolist())]
        getLogger().info(f"{phase}: {len(split)} ranking queries, full sort over {len(self.items)} items, the user's own masked")
        AbstractDataLoader.__init__(self, config, split, None, shuffle=False)
        self.is_sequential = True

    def _init_batch_size_and_step(self):
        self.step = max(1, int(self.config["eval_batch_size"]) // max(1, len(self.items)))
        self.set_batch_size(self.step)

    def collate_fn(self, index):
        rows = self._dataset[np.array(index)]
        masked = [self.masked[i] for i in index]
        history_index = (torch.from_numpy(np.repeat(np.arange(len(index)), [len(m) for m in masked])),
                         torch.from_numpy(np.concatenate(masked) if masked else np.zeros(0, dtype=np.int64)))
        return rows, history_index, torch.arange(len(rows)), rows[self.iid_field]


def prefix_groups(history: torch.Tensor, length: torch.Tensor, prompt_items: int) -> np.ndarray:
    """A group id per row: rows with the same last ``prompt_items`` history items (what the
    prompt's prefix is made of) share one."""
    history, length = history.cpu().numpy(), length.cpu().numpy()
    recent = np.zeros((len(history), prompt_items), dtype=np.int64)
    for r, (h, n) in enumerate(zip(history, length)):
        items = h[max(0, n - prompt_items) : n]
        recent[r, prompt_items - len(items) :] = items
    return np.unique(recent, axis=0, return_inverse=True)[1].reshape(-1)


class PrefixGroupedSampler(Sampler[int]):
    """Row indices, group by group (groups and rows within a group shuffled each epoch)."""

    def __init__(self, groups: np.ndarray, generator: torch.Generator):
        self.generator = generator
        order = np.argsort(groups, kind="stable")
        bounds = np.flatnonzero(np.diff(groups[order])) + 1
        self.members = [torch.from_numpy(part) for part in np.split(order, bounds)]

    def __len__(self) -> int:
        return sum(len(m) for m in self.members)

    def __iter__(self):
        for g in torch.randperm(len(self.members), generator=self.generator).tolist():
            rows = self.members[g]
            yield from rows[torch.randperm(len(rows), generator=self.generator)].tolist()


class _GroupedInit(DataLoader):
    """Sits between RecBole's AbstractDataLoader and torch's DataLoader in the MRO: turns
    RecBole's ``shuffle=True`` into the grouped sampler (RecBole offers no sampler argument)."""

    def __init__(self, *args, shuffle=False, sampler=None, generator=None, **kwargs):
        if shuffle and sampler is None:
            sampler, shuffle = PrefixGroupedSampler(self._groups, generator), False
        super().__init__(*args, shuffle=shuffle, sampler=sampler, generator=generator, **kwargs)


class PrefixGroupedTrainDataLoader(TrainDataLoader, _GroupedInit):
    """RecBole's train loader with prefix-grouped batches (``prefix_grouped_batches: True``).
    Several processes (DDP) keep RecBole's distributed sampler."""

    def __init__(self, config, dataset, sampler, shuffle: bool = False):
        feat = dataset.inter_feat
        list_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
        self._groups = prefix_groups(feat[list_field], feat[config["ITEM_LIST_LENGTH_FIELD"]], config["prompt_history_length"])
        super().__init__(config, dataset, sampler, shuffle=shuffle)
