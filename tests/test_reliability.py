"""Checkpoints survive interrupted saves; a NaN loss stops training with where it happened."""
import pytest
import torch

from recbole_collm import run_recbole_collm
from recbole_collm.compat import load_checkpoint
from recbole_collm import trainer as trainer_module
from tests.conftest import TINY_YAML


def test_interrupted_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "model.pth")
    trainer_module.atomic_torch_save({"v": 1}, path)
    real_save = torch.save

    def dying_save(obj, f, **kwargs):
        real_save({"partial": True}, f, **kwargs)
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(trainer_module.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        trainer_module.atomic_torch_save({"v": 2}, path)
    assert load_checkpoint(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]


def test_nan_loss_stops_with_step_users_and_checkpoint(tmp_path, monkeypatch):
    from recbole_collm.model.mf import MF

    real = MF.calculate_loss
    calls = {"n": 0}

    def sometimes_nan(self, interaction):
        calls["n"] += 1
        loss = real(self, interaction)
        return loss * float("nan") if calls["n"] > 3 else loss

    monkeypatch.setattr(MF, "calculate_loss", sometimes_nan)
    with pytest.raises(FloatingPointError, match=r"training loss is nan at step \d+; last good checkpoint: none saved yet"):
        run_recbole_collm(model="MF", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
            "epochs": 3, "train_batch_size": 64, "checkpoint_dir": str(tmp_path), "state": "WARNING"})


def test_nan_in_llm_training_names_users(tiny_llm_dir, tmp_path, monkeypatch):
    from recbole_collm.model.collm import CoLLM

    monkeypatch.setattr(CoLLM, "calculate_loss", lambda self, inter: self.logits(inter).sum() * float("inf") * 0)
    with pytest.raises(FloatingPointError, match=r"batch user ids \(internal\) \[\d+"):
        run_recbole_collm(model="TALLRec", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
            "llm_path": str(tiny_llm_dir), "train_rows_limit": 16, "eval_rows_limit": 8,
            "checkpoint_dir": str(tmp_path), "state": "WARNING", "show_progress": False})
