"""``cie_checkpoint: auto``: CoLLM-MF by default, the MF trained once with its own yaml and cached."""
import os

import pytest
import torch

from recbole_collm import run_recbole_collm
from recbole_collm.checkpoint import read_checkpoint
from recbole_collm.data import CollmDataset
from recbole_collm.errors import InputError
from recbole_collm.model.llm_recommender.llm.cf_source import CheckpointSource
from recbole_collm.model.llm_recommender.collm import CoLLM
from recbole_collm.trainer import PluginTrainer
from tests.conftest import TINY_YAML, llm_config


def build(tiny_llm_dir, tmp_path, **overrides):
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cie_checkpoint="auto", stage="cie", **overrides)
    train = CollmDataset(config).build()[0]
    torch.manual_seed(0)
    return CoLLM(config, train).eval(), config, train


def test_auto_trains_cie_model_with_its_own_yaml_and_caches_it(tiny_llm_dir, tmp_path, monkeypatch):
    fits = []
    real_fit = PluginTrainer.fit
    monkeypatch.setattr(PluginTrainer, "fit", lambda self, *a, **k: fits.append(1) or real_fit(self, *a, **k))
    model, config, train = build(tiny_llm_dir, tmp_path)
    path = config["cie_checkpoint"]  # the run records the file it used
    assert isinstance(model.cie.source, CheckpointSource) and model.cie.source.name == "MF"
    assert os.path.dirname(path) == config["checkpoint_dir"] and os.path.basename(path).startswith("MF-tiny-auto-")
    saved = read_checkpoint(path)
    assert saved["config"]["model"] == "MF" and saved["config"]["train_rows_limit"] is None  # all train rows
    assert saved["config"]["epochs"] == 200 and saved["config"]["learning_rate"] == 0.01  # MF.yaml, not CoLLM's
    assert len(fits) == 1
    # the same MF as training it by hand with the same seed and data
    reference = run_recbole_collm(model="MF", dataset="tiny", config_file_list=[TINY_YAML],
                                  config_dict={"seed": 2023, "checkpoint_dir": str(tmp_path / "ref"), "state": "WARNING"})
    expected = read_checkpoint(reference["model_file"])["state_dict"]
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in expected.items())
    assert not os.path.exists(path.replace(".pth", "-last.pth"))
    fits.clear()

    batch = train.inter_feat[torch.arange(8)]
    with torch.no_grad():
        first = model.logits(batch)
        again, config2, _ = build(tiny_llm_dir, tmp_path)
        assert not fits and config2["cie_checkpoint"] == path  # cached: not trained again
        assert torch.equal(again.logits(batch), first)
    _, other, _ = build(tiny_llm_dir, tmp_path, seed=7)  # other data settings: another file
    assert other["cie_checkpoint"] != path and len(fits) == 1


def test_auto_with_a_model_that_cannot_feed_the_cie_is_one_error(tiny_llm_dir, tmp_path):
    """Refused when the settings are read, before any data or model is built."""
    with pytest.raises(InputError, match="^cie_model: 'BPR' is not one of MF, LightGCN, SASRec, DIN$"):
        llm_config("CoLLM", tiny_llm_dir, tmp_path, cie_model="BPR", cie_checkpoint="auto")
