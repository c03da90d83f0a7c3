"""The collaborative source a model is handed: ``cf_checkpoint: auto`` (CoLLM-MF by default, the MF
trained once with its own yaml and cached), resolved and restored by the runner, never by the model."""
import os
import shutil
from pathlib import Path

import pytest
import torch

from recbole_collm import run_recbole_collm
from recbole_collm.data import CollmDataset
from recbole_collm.errors import InputError
from recbole_collm.files import read_checkpoint
from recbole_collm.model.cf_source import NOT_HANDED, CheckpointSource
from recbole_collm.model.llm_recommender.collm import CoLLM
from recbole_collm.quick_start import auto_cf_checkpoint
from recbole_collm.restore import AUTO_UNRESOLVED, build_model
from recbole_collm.trainer import PluginTrainer
from tests.conftest import TINY_YAML, llm_config


def build(tiny_llm_dir, tmp_path, **overrides):
    """What the runner does: ``auto`` resolved (trained or cached) first, then the model built."""
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint="auto", stage="cie", **overrides)
    config["cf_checkpoint"] = auto_cf_checkpoint(config)
    train = CollmDataset(config).build()[0]
    torch.manual_seed(0)
    return build_model(config, train).eval(), config, train


def test_auto_trains_cf_model_with_its_own_yaml_and_caches_it(tiny_llm_dir, tmp_path, monkeypatch):
    fits = []
    real_fit = PluginTrainer.fit
    monkeypatch.setattr(PluginTrainer, "fit", lambda self, *a, **k: fits.append(1) or real_fit(self, *a, **k))
    model, config, train = build(tiny_llm_dir, tmp_path)
    path = config["cf_checkpoint"]  # the run records the file it used
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
        assert not fits and config2["cf_checkpoint"] == path  # cached: not trained again
        assert torch.equal(again.logits(batch), first)
    _, other, _ = build(tiny_llm_dir, tmp_path, seed=7)  # other data settings: another file
    assert other["cf_checkpoint"] != path and len(fits) == 1


def test_auto_with_a_model_that_cannot_feed_the_cie_is_one_error(tiny_llm_dir, tmp_path):
    """Refused when the settings are read, before any data or model is built."""
    with pytest.raises(InputError, match="^cf_model: 'NeuMF' is not one of MF, LightGCNCTR, SASRecCTR, DINCTR, BPR, LightGCN, SASRec, DIN$"):
        llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_model="NeuMF", cf_checkpoint="auto")


def test_auto_cf_model_gets_its_own_settings_not_the_llm_runs_command_line(tiny_llm_dir, tmp_path, monkeypatch):
    """RecBole's Config reads sys.argv: the LLM run's --epochs / --learning_rate (and keys only an
    LLM model knows) must not reach the MF, nor leave its cache name unchanged."""
    plain = auto_cf_checkpoint(llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint="auto", state="WARNING"))
    monkeypatch.setattr("sys.argv", ["run_recbole_collm.py", "--model=CoLLM", "--epochs=1", "--learning_rate=0.5",
                                     "--lora_train_rows=4"])
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint="auto", state="WARNING")
    assert config["epochs"] == 1 and config["learning_rate"] == 0.5  # the LLM run takes them
    path = auto_cf_checkpoint(config)
    assert path == plain  # the same MF: cached, not retrained with the LLM's settings
    saved = read_checkpoint(path)["config"]
    assert saved["epochs"] == 200 and saved["learning_rate"] == 0.01


def test_auto_cache_key_covers_the_cf_models_settings_and_data(tiny_llm_dir, tmp_path):
    """Another value of a setting that shapes the MF (a data setting of the run) or other data
    bytes: another file, never the old model."""
    from recbole_collm.config import Config
    from recbole_collm.settings import cache_path

    def path(data_dir, **settings):
        config = Config(model="MF", dataset="tiny", config_file_list=[TINY_YAML], cmd_line=False,
                        config_dict={"data_path": str(data_dir), "checkpoint_dir": str(tmp_path), **settings})
        return cache_path(config)

    data = Path(TINY_YAML).parent
    assert path(data) == path(data)
    assert path(data, learning_rate=0.5) != path(data)
    assert path(data, embedding_size=8) != path(data)
    copy = tmp_path / "data"
    shutil.copytree(data / "tiny", copy / "tiny")
    assert path(copy) != path(data)  # another folder
    before = path(copy)
    inter = copy / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join([lines[0], *lines[2:], lines[1]]) + "\n")  # the same rows, reordered
    assert path(copy) != before  # same folder and settings, other bytes


def test_a_model_built_by_hand_with_auto_is_one_clear_error(tiny_llm_dir, tmp_path):
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint="auto", stage="cie")
    train = CollmDataset(config).build()[0]
    with pytest.raises(InputError, match=f"^{AUTO_UNRESOLVED.split('(')[0]}"):
        build_model(config, train)


def test_a_model_is_handed_its_source_and_never_restores_one(tiny_llm_dir, tmp_path, mf_checkpoint):
    """The constructor reads no checkpoint: built without the source its settings name, it says
    how to build it; build_model restores the checkpoint and hands it over."""
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=mf_checkpoint, stage="cie")
    train = CollmDataset(config).build()[0]
    with pytest.raises(InputError, match=f"^{NOT_HANDED.format(model='CoLLM').split('(')[0]}"):
        CoLLM(config, train)
    model = build_model(config, train)
    assert isinstance(model.cie.source, CheckpointSource) and model.cie.source.name == "MF"
    assert config["cf_checkpoint"] == mf_checkpoint  # the settings are the caller's, unchanged
