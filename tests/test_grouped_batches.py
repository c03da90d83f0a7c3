"""Prefix-grouped training batches: groups are exact, every row once per epoch, groups contiguous,
seeded and resumable through the loader's generator."""
import numpy as np
import torch

from recbole_collm.data import CollmDataset
from recbole_collm.data.dataloader import PrefixGroupedSampler, PrefixGroupedTrainDataLoader, prefix_groups
from recbole_collm.data.utils import data_preparation
from tests.conftest import tiny_config


def test_rows_with_the_same_recent_history_share_a_group():
    history = torch.tensor([[1, 2, 3, 0], [9, 2, 3, 0], [2, 3, 0, 0], [1, 2, 4, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    length = torch.tensor([3, 3, 2, 3, 0, 0])
    groups = prefix_groups(history, length, prompt_items=2)
    assert groups[0] == groups[1] == groups[2]  # the prompt shows only the last 2 items: (2, 3)
    assert groups[3] != groups[0] and groups[4] == groups[5] != groups[0]
    assert len(set(groups)) == 3


def epoch_order(sampler):
    return list(iter(sampler))


def test_each_epoch_is_a_permutation_with_contiguous_shuffled_groups():
    groups = np.array([0, 1, 0, 2, 1, 0, 3, 2, 0, 1])
    generator = torch.Generator().manual_seed(5)
    sampler = PrefixGroupedSampler(groups, generator)
    first, second = epoch_order(sampler), epoch_order(sampler)
    for order in (first, second):
        assert sorted(order) == list(range(10))
        seen = [groups[r] for r in order]
        runs = [g for k, g in enumerate(seen) if k == 0 or seen[k - 1] != g]
        assert len(runs) == len(set(runs)) == 4  # each group in one contiguous run
    assert first != second  # reshuffled every epoch
    again = PrefixGroupedSampler(groups, torch.Generator().manual_seed(5))
    assert epoch_order(again) == first  # seeded


def test_loader_resumes_with_the_same_batches_from_the_generator_state():
    config = tiny_config("CoLLM", train_rows_limit=None, train_batch_size=8)
    assert config["prefix_grouped_batches"]
    train, _, _ = data_preparation(config, CollmDataset(config))
    assert isinstance(train, PrefixGroupedTrainDataLoader)
    users = lambda loader: [b["user_id"].tolist() for b in loader]  # noqa: E731
    users(train)  # epoch 1
    state = train.generator.get_state()  # what the trainer's resume checkpoint holds
    epoch2 = users(train)
    train.generator.set_state(state)
    assert users(train) == epoch2
    assert sum(len(b) for b in epoch2) == len(train._dataset)
    # each prefix group is one contiguous run of the epoch (so a batch holds as few prefixes as the
    # batch size allows); RecBole's shuffled order splits groups into many runs
    def runs_and_groups(loader):
        keys = [tuple(h[max(0, n - 10) : n]) for batch in loader
                for h, n in zip(batch["item_id_list"].tolist(), batch["item_length"].tolist())]
        return 1 + sum(a != b for a, b in zip(keys, keys[1:])), len(set(keys))

    runs, groups = runs_and_groups(train)
    assert runs == groups
    shuffled_config = tiny_config("CoLLM", train_rows_limit=None, train_batch_size=8, prefix_grouped_batches=False)
    shuffled, _, _ = data_preparation(shuffled_config, CollmDataset(shuffled_config))
    assert not isinstance(shuffled, PrefixGroupedTrainDataLoader)
    runs, groups = runs_and_groups(shuffled)
    assert runs > groups
