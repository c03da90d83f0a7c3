"""One resume harness for every test that kills or interrupts a run and resumes it: a reference
run, the same run stopped part-way, then resumed; the tests compare the two results."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from recbole_collm import run_recbole_collm
from recbole_collm.trainer import LLMTrainer
from tests.conftest import ROOT, TINY_DATA_ARG, TINY_YAML


def _run(model: str, run: dict, folder: Path, **extra) -> dict:
    return run_recbole_collm(model=model, dataset="tiny", config_file_list=[TINY_YAML],
                             config_dict={**run, "checkpoint_dir": str(folder), **extra})


def kill_and_resume(tmp_path: Path, model: str, run: dict, resume: str = "auto") -> tuple[dict, dict]:
    """Run ``model`` in a subprocess, SIGKILL it at a random point after its first -last.pth,
    resume in-process (``resume: auto``, or ``file``: the -last.pth named explicitly), and return
    (reference result, resumed result)."""
    reference = _run(model, run, tmp_path / "ref")
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
    return reference, _run(model, run, killed_dir, resume=resume)


def interrupt_and_resume(tmp_path: Path, model: str, run: dict, interrupt_at: int, monkeypatch) -> tuple[dict, dict, int]:
    """Run ``model`` once through, then again with a KeyboardInterrupt at the start of its
    ``interrupt_at``-th training epoch (counted over every stage), then resume it (``resume:
    auto``). Returns (reference result, resumed result, epochs the resumed run trained)."""
    reference = _run(model, run, tmp_path / "ref")
    real = LLMTrainer._train_epoch
    calls = {"before": 0, "after": 0}

    def interrupted(self, *args, **kwargs):
        calls["before"] += 1
        if calls["before"] == interrupt_at:
            raise KeyboardInterrupt("simulated kill")
        return real(self, *args, **kwargs)

    def counted(self, *args, **kwargs):
        calls["after"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LLMTrainer, "_train_epoch", interrupted)
    try:
        _run(model, run, tmp_path / "run")
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError(f"the run finished before epoch {interrupt_at}")
    monkeypatch.setattr(LLMTrainer, "_train_epoch", counted)
    resumed = _run(model, run, tmp_path / "run", resume="auto")
    monkeypatch.setattr(LLMTrainer, "_train_epoch", real)
    return reference, resumed, calls["after"]
