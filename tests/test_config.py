"""Plugin resolution the RecBole way: plugin first, then RecBole; yaml layering."""
import subprocess
import sys
from pathlib import Path

import pytest
from recbole.model.general_recommender.bpr import BPR
from recbole.model.general_recommender.lightgcn import LightGCN as RecBoleLightGCN
from recbole.utils import ModelType

from recbole_collm import Config, get_model, get_trainer
from recbole_collm.config import RECBOLE_EXAMPLE_DIR
from recbole_collm.model.general_recommender.mf import MF
from recbole_collm.trainer import PluginTrainerMixin
from tests.conftest import ROOT, TINY_DATA_ARG, TINY_YAML, tiny_config


def test_get_model_searches_plugin_then_recbole():
    assert get_model("MF") is MF
    assert get_model("LightGCNCTR").__module__ == "recbole_collm.model.general_recommender.lightgcnctr"
    assert get_model("LightGCN") is RecBoleLightGCN  # RecBole's own: no plugin model takes a RecBole name
    assert get_model("BPR") is BPR
    with pytest.raises(ValueError, match="NoSuchModel"):
        get_model("NoSuchModel")


def test_get_trainer_mixes_in_plugin_evaluation():
    for name, model_type in [("MF", ModelType.CONTEXT), ("BPR", ModelType.GENERAL)]:
        assert issubclass(get_trainer(model_type, name), PluginTrainerMixin)


def test_layering_plugin_yaml_over_recbole_and_user_over_plugin(tmp_path):
    config = Config(model="MF", dataset="ml-100k")
    assert config["threshold"] == {"rating": 4}  # properties/dataset/ml-100k.yaml
    assert config["weight_decay"] == 0.0001  # properties/model/MF.yaml
    assert config["eval_args"]["mode"]["valid"] == "labeled"  # properties/overall.yaml
    assert config["MAX_ITEM_LIST_LENGTH"] == 10
    assert config["MODEL_TYPE"] == ModelType.CONTEXT
    assert Path(config["data_path"]).resolve() == RECBOLE_EXAMPLE_DIR / "ml-100k"  # no download

    user_yaml = tmp_path / "user.yaml"
    user_yaml.write_text("weight_decay: 0.5\nembedding_size: 8\n")
    config = Config(model="MF", dataset="ml-100k", config_file_list=[str(user_yaml)], config_dict={"embedding_size": 4})
    assert config["weight_decay"] == 0.5
    assert config["embedding_size"] == 4  # config dict beats config file (RecBole's order)


def test_plugin_metrics_accepted_as_valid_metric():
    config = tiny_config(metrics=["AUC", "UAUC", "UNDCG", "WGAUC"], valid_metric="UAUC")
    assert config["valid_metric"] == "UAUC" and config["valid_metric_bigger"] is True


def test_runner_cli_trains_and_evaluates(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_collm.py"), "--model=MF", "--dataset=tiny",
         f"--config_files={TINY_YAML}", TINY_DATA_ARG, "--epochs=1", f"--checkpoint_dir={tmp_path}", "--state=INFO"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    log = out.stdout + out.stderr
    assert "test result" in log and "uauc" in log and "warm_rows" in log
    assert list(tmp_path.glob("MF-*.pth"))
