"""A NaN loss stops training with where it happened; a killed run resumes to the same result."""
import pytest

from recbole_collm import run_recbole_collm
from tests.conftest import TINY_YAML
from tests.resume import interrupt_and_resume, kill_and_resume


def test_nan_loss_stops_with_step_users_and_checkpoint(tmp_path, monkeypatch):
    from recbole_collm.model.general_recommender.mf import MF

    real = MF.calculate_loss
    calls = {"n": 0}

    def sometimes_nan(self, interaction):
        calls["n"] += 1
        loss = real(self, interaction)
        return loss * float("nan") if calls["n"] > 3 else loss

    monkeypatch.setattr(MF, "calculate_loss", sometimes_nan)
    with pytest.raises(FloatingPointError, match=r"training loss is nan at step 4 \(epoch 0\); last good checkpoint: none saved yet"):
        run_recbole_collm(model="MF", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
            "epochs": 3, "train_batch_size": 64, "checkpoint_dir": str(tmp_path), "state": "WARNING"})


def test_nan_in_llm_training_names_users(tiny_llm_dir, tmp_path, monkeypatch):
    from recbole_collm.model.llm_recommender.collm import CoLLM

    def nan_loss(self, inter):
        logits = self.logits(inter)
        return logits.sum() * float("inf") * 0, logits

    monkeypatch.setattr(CoLLM, "loss_and_logits", nan_loss)
    with pytest.raises(FloatingPointError, match=r"batch user ids \(internal\) \[\d+"):
        run_recbole_collm(model="TALLRec", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
            "llm_path": str(tiny_llm_dir), "train_rows_limit": 16, "eval_rows_limit": 8,
            "checkpoint_dir": str(tmp_path), "state": "WARNING", "show_progress": False})


MF_RUN = {"epochs": 25, "train_batch_size": 16, "stopping_step": 100, "state": "WARNING", "seed": 7,
          "learning_rate": 0.01}


@pytest.mark.parametrize("resume", ["auto", "file"])
def test_killed_run_resumes_to_the_same_result(tmp_path, resume):
    reference, resumed = kill_and_resume(tmp_path, "MF", MF_RUN, resume)
    assert resumed["test_result"]["auc"] == pytest.approx(reference["test_result"]["auc"], abs=1e-6)
    assert resumed["test_result"]["logloss"] == pytest.approx(reference["test_result"]["logloss"], abs=1e-6)
    assert resumed["best_valid_score"] == pytest.approx(reference["best_valid_score"], abs=1e-6)


def test_killed_collm_run_resumes_to_the_same_result(tiny_llm_dir, tmp_path):
    run = {"llm_path": str(tiny_llm_dir), "train_rows_limit": 48, "eval_rows_limit": 16, "epochs": 4,
           "stopping_step": 10, "state": "WARNING", "show_progress": False, "warmup_steps": 0,
           "learning_rate": 0.01, "cf_model": "MF", "cf_checkpoint": None, "seed": 5}
    reference, resumed = kill_and_resume(tmp_path, "CoLLM", run)
    assert resumed["test_result"]["auc"] == pytest.approx(reference["test_result"]["auc"], abs=1e-6)
    assert resumed["test_result"]["logloss"] == pytest.approx(reference["test_result"]["logloss"], abs=1e-6)


def test_same_seed_same_scores(tmp_path):
    runs = [run_recbole_collm(model="SASRecCTR", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "epochs": 2, "state": "WARNING", "checkpoint_dir": str(tmp_path / str(k))}) for k in range(2)]
    assert runs[0]["test_result"] == runs[1]["test_result"]


@pytest.mark.parametrize("interrupt_at", [2, 3, 4])  # epochs: stage 1 = calls 1-2, stage 2 = calls 3-4
def test_two_step_run_interrupted_in_either_stage_resumes_the_same(tiny_llm_dir, tmp_path, monkeypatch, interrupt_at):
    llm_run = {"llm_path": str(tiny_llm_dir), "train_rows_limit": 16, "eval_rows_limit": 8, "epochs": 2,
               "stopping_step": 10, "state": "WARNING", "show_progress": False, "warmup_steps": 0,
               "learning_rate": 0.01, "cf_model": "MF", "cf_checkpoint": None, "seed": 3,
               "cie_epochs": 2, "cie_learning_rate": 0.01,
               # exact in float32; in bf16 a resumed run encodes its prefixes in other batches, and
               # the kernels' rounding depends on the batch shape (scores agree within ~1e-3)
               "llm_compute_dtype": "float32"}
    reference, resumed, epochs = interrupt_and_resume(tmp_path, "CoLLM", llm_run, interrupt_at, monkeypatch)
    assert epochs == 4 - interrupt_at + 1  # from the interrupted epoch on, not from the start
    assert resumed["test_result"]["auc"] == pytest.approx(reference["test_result"]["auc"], abs=1e-6)
    assert resumed["test_result"]["logloss"] == pytest.approx(reference["test_result"]["logloss"], abs=1e-6)
