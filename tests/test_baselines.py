"""Each baseline trains for an epoch through the real Trainer and reloads from its checkpoint."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from recbole_collm import load_data_and_model, run_recbole_collm
from recbole_collm.data import CollmDataset
from recbole_collm.evaluator.metrics import uauc
from recbole_collm.model.general_recommender.lightgcnctr import LightGCNCTR
from recbole_collm.trainer import PluginTrainer
from tests.conftest import TINY_YAML, tiny_config


@pytest.mark.parametrize("model", ["MF", "LightGCNCTR", "SASRecCTR", "DINCTR"])
def test_baseline_trains_saves_and_reloads(model, tmp_path):
    result = run_recbole_collm(
        model=model, dataset="tiny", config_file_list=[TINY_YAML],
        config_dict={"epochs": 1, "checkpoint_dir": str(tmp_path), "state": "WARNING", "seed": 2023},
    )
    test, rows = result["test_result"], result["test_rows"]
    # the reported metrics are those of the rows it scored (RecBole rounds to 4 places)
    assert test["auc"] == pytest.approx(roc_auc_score(rows["label"], rows["score"]), abs=1e-4)
    assert test["uauc"] == pytest.approx(uauc(np.asarray(rows["user"]), np.asarray(rows["score"]), np.asarray(rows["label"])), abs=1e-4)
    assert test["warm_rows"] + test["cold_rows"] <= len(rows["label"]) and test["warm_rows"] > 0

    config, reloaded, _, _, _, test_data = load_data_and_model(result["model_file"])
    package = "general_recommender" if model in ("MF", "LightGCNCTR") else "sequential_recommender"
    assert type(reloaded).__module__ == f"recbole_collm.model.{package}.{model.lower()}"
    trainer = PluginTrainer(config, reloaded)
    again = trainer.evaluate(test_data, load_best_model=False)
    np.testing.assert_allclose(again.rows["score"], rows["score"], rtol=1e-6)
    assert again["auc"] == test["auc"] and again["uauc"] == test["uauc"]


def test_lightgcn_graph_holds_only_train_positives():
    config = tiny_config("LightGCNCTR")
    train = CollmDataset(config).build()[0]
    model = LightGCNCTR(config, train)
    feat = train.inter_feat
    positive = feat["label"] > 0.5
    pairs = set(zip(feat["user_id"][positive].tolist(), feat["item_id"][positive].tolist()))
    graph = model.interaction_matrix
    assert set(zip(graph.row.tolist(), graph.col.tolist())) == pairs
    assert len(pairs) < len(set(zip(feat["user_id"].tolist(), feat["item_id"].tolist())))


def test_sasrec_and_din_accept_empty_history():
    for name in ("SASRecCTR", "DINCTR"):
        config = tiny_config(name)
        train = CollmDataset(config).build()[0]
        from recbole_collm import get_model

        model = get_model(name)(config, train).eval()
        batch = train.inter_feat[torch.arange(8)]
        batch["item_length"] = torch.zeros(8, dtype=torch.long)
        batch["item_id_list"] = torch.zeros_like(batch["item_id_list"])
        scores = model.predict(batch)
        assert torch.isfinite(scores).all() and scores.shape == (8,)
