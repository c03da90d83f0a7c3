"""Atomic writes never leave a torn file; checkpoints with a pickled Config load; one restorer
rebuilds config, data and model from a checkpoint."""
import pickle

import pytest
import torch

from recbole_collm import files
from recbole_collm.files import atomic_write_dir, read_checkpoint, save_checkpoint
from recbole_collm.restore import restore


def test_interrupted_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "model.pth")
    save_checkpoint({"v": 1}, path)
    real_save = torch.save

    def dying_save(obj, f, **kwargs):
        real_save({"partial": True}, f, **kwargs)
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(files.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"v": 2}, path)
    assert read_checkpoint(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]


def test_interrupted_folder_write_keeps_the_old_folder(tmp_path):
    target = tmp_path / "adapter"

    def write(folder, text, die=False):
        import os

        os.makedirs(folder)
        (tmp_path / "x").write_text("")  # unrelated file: left alone
        with open(os.path.join(folder, "w.txt"), "w") as f:
            f.write(text)
        if die:
            raise KeyboardInterrupt

    atomic_write_dir(target, lambda f: write(f, "one"))
    with pytest.raises(KeyboardInterrupt):
        atomic_write_dir(target, lambda f: write(f, "two", die=True))
    assert (target / "w.txt").read_text() == "one"
    atomic_write_dir(target, lambda f: write(f, "three"), replace=False)  # an existing folder wins
    assert (target / "w.txt").read_text() == "one"
    atomic_write_dir(target, lambda f: write(f, "four"))
    assert (target / "w.txt").read_text() == "four"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "x"]


def test_read_checkpoint_reads_a_pickled_config(tmp_path):
    from tests.conftest import tiny_config

    path = tmp_path / "ckpt.pth"
    torch.save({"config": tiny_config(), "state_dict": {}}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(path)  # torch >= 2.6: weights_only=True refuses the pickled Config
    assert read_checkpoint(path)["config"]["model"] == "MF"


def test_read_checkpoint_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint file '.*nope.pth' does not exist"):
        read_checkpoint(tmp_path / "nope.pth")


def test_restore_rebuilds_the_saved_model(mf_checkpoint):
    """The same weights and the same scores as the model that was saved."""
    restored = restore(mf_checkpoint)
    saved = read_checkpoint(mf_checkpoint)["state_dict"]
    assert set(restored.model.state_dict()) == set(saved)
    for key, value in saved.items():
        assert torch.equal(restored.model.state_dict()[key], value)
    assert restored.config["model"] == "MF"
    train = restored.splits[0]
    assert restored.model.n_users == train.user_num


