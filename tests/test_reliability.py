"""A NaN loss stops training with where it happened; a killed run resumes to the same result."""
import random
import signal
import subprocess
import sys
import time

import pytest

from recbole_collm import run_recbole_collm
from tests.conftest import ROOT, TINY_DATA_ARG, TINY_YAML


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

    monkeypatch.setattr(CoLLM, "calculate_loss", lambda self, inter: self.logits(inter).sum() * float("inf") * 0)
    with pytest.raises(FloatingPointError, match=r"batch user ids \(internal\) \[\d+"):
        run_recbole_collm(model="TALLRec", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
            "llm_path": str(tiny_llm_dir), "train_rows_limit": 16, "eval_rows_limit": 8,
            "checkpoint_dir": str(tmp_path), "state": "WARNING", "show_progress": False})


MF_RUN = {"epochs": 25, "train_batch_size": 16, "stopping_step": 100, "state": "WARNING", "seed": 7,
          "learning_rate": 0.01}


def kill_and_resume(tmp_path, model, run, resume="auto"):
    """Run ``model`` in a subprocess, SIGKILL it at a random point after its first -last.pth,
    resume in-process (``resume: auto``, or ``file``: the -last.pth named explicitly), and return
    (reference result, resumed result)."""
    reference = run_recbole_collm(model=model, dataset="tiny", config_file_list=[TINY_YAML],
                                  config_dict={**run, "checkpoint_dir": str(tmp_path / "ref")})
    killed_dir = tmp_path / "killed"
    args = [sys.executable, str(ROOT / "run_recbole_collm.py"), f"--model={model}", "--dataset=tiny",
            f"--config_files={TINY_YAML}", TINY_DATA_ARG, f"--checkpoint_dir={killed_dir}"]
    args += [f"--{k}={v}" for k, v in run.items()]
    process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list(killed_dir.glob("*-last.pth")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.0))  # a random point: mid-epoch, mid-validation or mid-save
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    last = list(killed_dir.glob("*-last.pth"))
    assert len(last) == 1
    if resume == "file":
        moved = tmp_path / "elsewhere" / last[0].name  # named explicitly, not found by auto
        moved.parent.mkdir()
        last[0].rename(moved)
        resume = str(moved)
    resumed = run_recbole_collm(model=model, dataset="tiny", config_file_list=[TINY_YAML],
                                config_dict={**run, "checkpoint_dir": str(killed_dir), "resume": resume})
    return reference, resumed


@pytest.mark.parametrize("resume", ["auto", "file"])
def test_killed_run_resumes_to_the_same_result(tmp_path, resume):
    reference, resumed = kill_and_resume(tmp_path, "MF", MF_RUN, resume)
    assert resumed["test_result"]["auc"] == pytest.approx(reference["test_result"]["auc"], abs=1e-6)
    assert resumed["test_result"]["logloss"] == pytest.approx(reference["test_result"]["logloss"], abs=1e-6)
    assert resumed["best_valid_score"] == pytest.approx(reference["best_valid_score"], abs=1e-6)


def test_killed_collm_run_resumes_to_the_same_result(tiny_llm_dir, tmp_path):
    run = {"llm_path": str(tiny_llm_dir), "train_rows_limit": 48, "eval_rows_limit": 16, "epochs": 4,
           "stopping_step": 10, "state": "WARNING", "show_progress": False, "warmup_steps": 0,
           "learning_rate": 0.01, "cie_model": "MF", "cie_checkpoint": None, "seed": 5}
    reference, resumed = kill_and_resume(tmp_path, "CoLLM", run)
    assert resumed["test_result"]["auc"] == pytest.approx(reference["test_result"]["auc"], abs=1e-6)
    assert resumed["test_result"]["logloss"] == pytest.approx(reference["test_result"]["logloss"], abs=1e-6)


def test_same_seed_same_scores(tmp_path):
    runs = [run_recbole_collm(model="SASRec", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "epochs": 2, "state": "WARNING", "checkpoint_dir": str(tmp_path / str(k))}) for k in range(2)]
    assert runs[0]["test_result"] == runs[1]["test_result"]


@pytest.mark.parametrize("interrupt_at", [2, 3, 4])  # epochs: stage 1 = calls 1-2, stage 2 = calls 3-4
def test_two_step_run_interrupted_in_either_stage_resumes_the_same(tiny_llm_dir, tmp_path, monkeypatch, interrupt_at):
    from recbole_collm.trainer import LLMTrainer

    llm_run = {"llm_path": str(tiny_llm_dir), "train_rows_limit": 16, "eval_rows_limit": 8, "epochs": 2,
               "stopping_step": 10, "state": "WARNING", "show_progress": False, "warmup_steps": 0,
               "learning_rate": 0.01, "cie_model": "MF", "cie_checkpoint": None, "seed": 3,
               "cie_epochs": 2, "cie_learning_rate": 0.01,
               # exact in float32; in bf16 a resumed run encodes its prefixes in other batches, and
               # the kernels' rounding depends on the batch shape (scores agree within ~1e-3)
               "llm_compute_dtype": "float32"}
    reference = run_recbole_collm(model="CoLLM", dataset="tiny", config_file_list=[TINY_YAML],
                                  config_dict={**llm_run, "checkpoint_dir": str(tmp_path / "ref")})
    real = LLMTrainer._train_epoch
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt("simulated kill")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LLMTrainer, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_recbole_collm(model="CoLLM", dataset="tiny", config_file_list=[TINY_YAML],
                          config_dict={**llm_run, "checkpoint_dir": str(tmp_path / "run")})
    monkeypatch.setattr(LLMTrainer, "_train_epoch", real)
    resumed = run_recbole_collm(model="CoLLM", dataset="tiny", config_file_list=[TINY_YAML],
                                config_dict={**llm_run, "checkpoint_dir": str(tmp_path / "run"), "resume": "auto"})
    assert resumed["test_result"]["auc"] == pytest.approx(reference["test_result"]["auc"], abs=1e-6)
    assert resumed["test_result"]["logloss"] == pytest.approx(reference["test_result"]["logloss"], abs=1e-6)
