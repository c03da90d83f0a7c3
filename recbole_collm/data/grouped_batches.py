"""Prefix-grouped training batches: rows whose prompts share a prefix (the same recent history)
land in the same batch, so the shared-prefix engine encodes that prefix once for all of them —
with its exact summed gradient in the stages where the prefix trains (LoRA, one step).

Order per epoch: the groups in a random order, the rows of each group in a random order, then cut
into batches of ``train_batch_size`` (a large group spans batches, small ones share one). Both
draws use the loader's own seeded generator, whose state the trainer saves in its resume
checkpoints, so a resumed run sees the same batches.
"""
from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataloader.general_dataloader import TrainDataLoader
from torch.utils.data import DataLoader, Sampler


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
