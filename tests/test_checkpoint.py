"""Atomic writes never leave a torn file; checkpoints with a pickled Config load; one restorer
rebuilds config, data and model from a checkpoint."""
import pickle

import pytest
import torch

from recbole_collm import files
from recbole_collm.errors import InputError
from recbole_collm.files import atomic_write_dir, read_checkpoint, save_checkpoint
from recbole_collm.restore import restore
from recbole_collm.settings import RENAMED, upgrade_settings


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


def test_checkpoints_written_before_the_models_moved_still_load(tmp_path, monkeypatch):
    """A Config pickled before the models were arranged by type names ``recbole_collm.model.mf``; it reads as the new MF."""
    import sys

    from recbole_collm.model.general_recommender import mf

    path = tmp_path / "old.pth"
    with monkeypatch.context() as old_layout:  # write as the old layout did
        old_layout.setitem(sys.modules, "recbole_collm.model.mf", mf)
        old_layout.setattr(mf.MF, "__module__", "recbole_collm.model.mf")
        torch.save({"model_class": mf.MF}, path)
    assert b"recbole_collm.model.mf" in path.read_bytes()
    assert "recbole_collm.model.mf" not in sys.modules
    assert read_checkpoint(path)["model_class"] is mf.MF


def test_a_config_saved_before_a_rename_gives_its_value_to_the_new_key():
    from tests.conftest import tiny_config

    config = tiny_config("CoLLM")
    for old, (new, _) in RENAMED.items():  # as an older CoLLM checkpoint holds them
        del config.final_config_dict[new]
        config.final_config_dict[old] = f"saved {old}"
    upgrade_settings(config)
    for old, (new, _) in RENAMED.items():
        assert config[new] == f"saved {old}" and old not in config.final_config_dict
    given = {"cie_checkpoint": "mf.pth", "cf_model": "MF"}  # an adapter config's settings
    upgrade_settings(given)
    assert given == {"cf_checkpoint": "mf.pth", "cf_model": "MF"}


def test_a_renamed_key_in_the_users_settings_is_one_error_naming_the_new_key():
    from recbole_collm import Config

    with pytest.raises(InputError, match=r"^cie_checkpoint: renamed to cf_checkpoint \(A-LLMRec reads it too"):
        Config(model="CoLLM", dataset="ml-100k", config_dict={"cie_checkpoint": "mf.pth"})