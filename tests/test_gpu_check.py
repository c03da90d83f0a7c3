"""benchmarks/gpu_check.py: its dry run (the same code on a tiny LLaMA and a few rows, on the CPU)
and the way it cuts the transfers for a bare GPU machine."""
import json
import subprocess
import sys

import pytest
from sklearn.metrics import roc_auc_score

from benchmarks.gpu_check import plan_transfers
from tests.conftest import ROOT


def test_transfers_are_cut_in_order_under_the_limit(tmp_path):
    sizes = {"a.whl": 3 * 2**20, "b.gguf": 10 * 2**20, "c.inter": 2**20}
    files = []
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(bytes([len(files)]) * size)
        files.append(tmp_path / name)
    calls = plan_transfers(files, limit_mb=4)
    assert [sum(end - start for _, start, end in call) for call in calls] == [4 * 2**20, 4 * 2**20, 4 * 2**20, 2 * 2**20]
    # every byte once, in order: joining the pieces of a file gives it back
    for path in files:
        pieces = [(start, end) for call in calls for p, start, end in call if p == path]
        assert pieces[0][0] == 0 and pieces[-1][1] == path.stat().st_size
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))


@pytest.mark.slow
def test_dry_run_trains_both_stages_and_scores_both_paths(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", f"--out={tmp_path}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    shape = json.loads((tmp_path / "gpu_check_shape.json").read_text())
    lora, cie = shape["lora"], shape["cie"]
    # LoRA's B starts at zero, so the first step's gradient reaches B only; AdamW's decay moves A too
    assert lora["lora_b_tensors"] * 2 == lora["tensors"] > 0
    assert (lora["nonzero_grads"], lora["updated_tensors"]) == (lora["lora_b_tensors"], lora["tensors"])
    assert cie["lora_b_tensors"] == 0 and cie["nonzero_grads"] == cie["updated_tensors"] == cie["tensors"] > 0
    assert lora["frozen_tunable_unchanged"] is True and cie["frozen_tunable_unchanged"] is True
    assert shape["frozen_llm_weight_unchanged"] is True
    assert 0 < shape["split_max_abs_diff"] < 0.005  # shared prefix = plain path, in bf16 (tests/test_precision.py)
    full = json.loads((tmp_path / "gpu_check_full.json").read_text())
    assert list(full["models"]) == ["MF", "TALLRec", "CoLLM-MF"]
    for name, model in full["models"].items():  # each AUC from the model's own test rows
        rows = model["rows"]
        assert 0 < sum(rows["label"]) < len(rows["label"]), name
        assert model["auc"] == pytest.approx(roc_auc_score(rows["label"], rows["score"]), abs=1e-4), name
    assert full["models"]["CoLLM-MF"]["rows"]["user"] == full["models"]["MF"]["rows"]["user"]  # the same rows
    assert [line.split()[0] for line in full["collm_vs_mf"]] == ["AUC", "UAUC"]
