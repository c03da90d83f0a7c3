"""The plugin inside RecBole: RecBole's own quick start on this stack, RecBole's checkpoints in the
collaborative slots, RecBole's models on the labeled protocol, and no RecBole name shadowed."""
from __future__ import annotations

import glob
import importlib
import inspect
import logging
import os

import numpy as np
import pytest
import recbole.model.general_recommender as recbole_general
import recbole.model.sequential_recommender as recbole_sequential
import torch
from recbole.model.sequential_recommender.sasrec import SASRec as RecBoleSASRec
from recbole.quick_start import load_data_and_model, objective_function, run_recbole
from recbole.utils import InputType
from sklearn.metrics import roc_auc_score

from recbole_collm import Config, get_model, run_recbole_collm
from recbole_collm.data import CollmDataset
from recbole_collm.data.utils import data_preparation
from recbole_collm.errors import InputError
from recbole_collm.evaluator.compare import paired_bootstrap
from recbole_collm.model.sequential_recommender.sasrecctr import SASRecCTR
from recbole_collm.protocol import FULL_SORT_ONLY, LABEL_READERS, OWN_DATASET
from recbole_collm.restore import build_model, restore
from recbole_collm.utils import MODEL_PACKAGES
from tests.conftest import ROOT, TINY_YAML, llm_config, ranking_llm_config, tiny_config


def recbole_run(name: str, folder, **settings) -> str:
    """A checkpoint written by RecBole's own ``run_recbole`` on the tiny dataset (2 epochs)."""
    config = {"epochs": 2, "checkpoint_dir": str(folder / name), "state": "WARNING", "show_progress": False,
              "seed": 2023, **settings}
    run_recbole(model=name, dataset="tiny", config_file_list=[TINY_YAML], config_dict=config)
    return max(glob.glob(str(folder / name / f"{name}-*.pth")), key=os.path.getmtime)


@pytest.fixture(scope="module")
def recbole_checkpoints(tmp_path_factory) -> dict:
    """BPR, LightGCN, SASRec (next-item, RecBole's CE loss) and DIN, each saved by RecBole itself."""
    folder = tmp_path_factory.mktemp("recbole")
    checkpoints = {name: recbole_run(name, folder) for name in ("BPR", "LightGCN", "DIN")}
    # RecBole's SASRec defaults to the CE loss, which RecBole runs without negative sampling
    checkpoints["SASRec"] = recbole_run("SASRec", folder, train_neg_sample_args=None)
    yield checkpoints
    logging.getLogger().handlers.clear()  # RecBole's init_logger left its file handlers


# --- RecBole's own entry points on this stack --------------------------------------------------
def test_recbole_quick_start_trains_saves_and_reloads_bpr_and_sasrec(recbole_checkpoints):
    """RecBole's run_recbole ended in a weights-only torch.load refusal after training; its
    load_data_and_model could read no checkpoint. The reloaded model scores as the saved one."""
    for name in ("BPR", "SASRec"):
        config, model, dataset, _, _, test_data = load_data_and_model(recbole_checkpoints[name])
        assert type(model).__module__ == f"recbole.model.{'general' if name == 'BPR' else 'sequential'}_recommender.{name.lower()}"
        saved = torch.load(recbole_checkpoints[name], weights_only=False)["state_dict"]
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in saved.items())
        assert config["model"] == name and dataset.dataset_name == "tiny"


def test_recbole_objective_function_runs(tmp_path):
    result = objective_function(config_dict={"model": "BPR", "dataset": "tiny", "epochs": 1, "state": "WARNING",
                                             "checkpoint_dir": str(tmp_path), "show_progress": False},
                                config_file_list=[TINY_YAML], saved=False)
    logging.getLogger().handlers.clear()
    assert result["model"] == "BPR" and set(result["test_result"]) >= {"recall@10", "ndcg@10"}


# --- RecBole checkpoints in the collaborative slots --------------------------------------------
@pytest.mark.parametrize("name", ["BPR", "LightGCN", "SASRec", "DIN"])
def test_recbole_checkpoint_feeds_the_cie_with_its_own_vectors(name, recbole_checkpoints, tiny_llm_dir, tmp_path):
    """The slots hold the vectors RecBole's model scores with: put back through the model's own
    scoring (a dot product, or DIN's prediction MLP), they give RecBole's own ``predict`` for the
    same rows, looked up by token in the checkpoint's dataset."""
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=recbole_checkpoints[name], stage="cie",
                        cf_history_length=5)
    train = CollmDataset(config).build()[0]
    model = build_model(config, train).eval()
    source = model.cie.source
    assert source.name == name and type(source.model.model).__module__.startswith("recbole.model.")
    batch = train.inter_feat[torch.arange(12)]
    cf = restore(recbole_checkpoints[name])
    cf_model, cf_data = cf.model.eval(), cf.dataset
    with torch.no_grad():
        user, item = source(batch)
        rows = source.translate(batch)
        assert rows["user_id"].tolist() == cf_data.token2id("user_id", train.id2token("user_id", batch["user_id"])).tolist()
        if name == "DIN":
            own = torch.sigmoid(cf_model.dnn_predict_layers(cf_model.dnn_mlp_layers(user))).squeeze(-1)
            width = user.shape[1] // 3
            torch.testing.assert_close(item, user[:, width:2 * width].repeat(1, 3))
        else:
            own = (user * item).sum(-1)
        if name in ("SASRec", "DIN"):
            rows["item_length"] = rows["item_length"].clamp(min=1)
        torch.testing.assert_close(own, cf_model.predict(rows))
    assert user.shape[1] == source.dim and torch.isfinite(model.logits(batch)).all()


def test_allmrec_reads_a_recbole_sasrec(recbole_checkpoints, tiny_llm_dir, tmp_path):
    """A-LLMRec aligns the item embedding of RecBole's own next-item SASRec (as the official code)."""
    config = ranking_llm_config("ALLMRec", tiny_llm_dir, tmp_path, "uni5", cf_checkpoint=recbole_checkpoints["SASRec"])
    train = CollmDataset(config).build()[0]
    model = build_model(config, train)
    items = torch.arange(1, 6)
    cf = restore(recbole_checkpoints["SASRec"])
    ids = torch.as_tensor(cf.dataset.token2id("item_id", train.id2token("item_id", items)))
    torch.testing.assert_close(model.source.item_vectors(items), cf.model.item_embedding(ids))


def test_checkpoint_of_another_dataset_is_refused(mf_checkpoint, tiny_llm_dir, tmp_path):
    """Numeric tokens of two datasets collide: the dataset's name decides, unless told."""
    other = tmp_path / "data" / "tiny2"
    other.mkdir(parents=True)
    for suffix in ("inter", "item"):
        (other / f"tiny2.{suffix}").write_text((ROOT / "tests" / "data" / "tiny" / f"tiny.{suffix}").read_text())
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, dataset="tiny2", data_path=str(tmp_path / "data"),
                        cf_checkpoint=mf_checkpoint, stage="cie")
    train = CollmDataset(config).build()[0]
    with pytest.raises(InputError, match=r"^cf_checkpoint: .* was trained on 'tiny', this run is on 'tiny2'; "
                                         r"set cf_other_dataset: True to read it all the same$"):
        build_model(config, train)
    config["cf_other_dataset"] = True
    assert build_model(config, train).cie.source.name == "MF"  # every token found: taken when told


# --- RecBole's models on the labeled protocol --------------------------------------------------
def test_label_readers_are_the_recbole_models_whose_loss_reads_the_label():
    """RecBole's pointwise general and sequential models that read ``LABEL_FIELD``: the list the
    protocol trains on every labeled row (checked against RecBole's source, so a new RecBole
    release that changes it fails here)."""
    found = set()
    for package in (recbole_general, recbole_sequential):
        for name, cls in vars(package).items():
            if isinstance(cls, type) and getattr(cls, "input_type", None) == InputType.POINTWISE and \
                    "LABEL_FIELD" in inspect.getsource(inspect.getmodule(cls)):
                found.add(name)
    assert found == LABEL_READERS


def test_refused_lists_are_recbole_s_models_that_cannot_score_labeled_rows():
    """Checked against RecBole's source: the models whose ``predict`` is disabled, and the
    sequential models RecBole gives a dataset class of their own."""
    import recbole.data.dataset.customized_dataset as customized

    disabled = {name for name, cls in vars(recbole_sequential).items() if isinstance(cls, type)
                and hasattr(cls, "predict") and "assert False" in inspect.getsource(cls.predict)}
    assert disabled == FULL_SORT_ONLY
    own = {name[:-len("Dataset")] for name in vars(customized) if name.endswith("Dataset")} & set(vars(recbole_sequential))
    assert own == OWN_DATASET


@pytest.mark.parametrize("name", ["DeepFM", "KD_DAGFM"])  # KD_DAGFM scores in a column
def test_context_aware_models_train_on_labeled_rows(name, tmp_path):
    result = run_recbole_collm(model=name, dataset="tiny", config_file_list=[TINY_YAML],
                               config_dict={"epochs": 2, "checkpoint_dir": str(tmp_path), "state": "WARNING", "seed": 2023})
    rows, test = result["test_rows"], result["test_result"]
    assert test["auc"] == pytest.approx(roc_auc_score(rows["label"], rows["score"]), abs=1e-4)
    assert len(rows["label"]) == len(CollmDataset(tiny_config(name)).build()[2])  # every labeled test row


def test_implicit_models_read_the_liked_rows_only():
    """EASE's matrix, BPR's positives and RecBole SASRec's next-item targets are liked rows; the
    pairwise BPR gets RecBole's uniform negative; valid and test keep both labels."""
    full = CollmDataset(tiny_config("MF")).build()
    liked = full[0].inter_feat["label"] > 0.5
    for name in ("EASE", "BPR", "SASRec"):
        config = tiny_config(name)
        dataset = CollmDataset(config)
        train, valid, test = data_preparation(config, dataset)
        feat = train._dataset.inter_feat
        assert (feat["label"] == 1).all() and (valid._dataset.inter_feat["label"] == 0).any()
        if name == "SASRec":  # a next-item target has an earlier liked item (RecBole's rule)
            assert (feat["item_length"] > 0).all() and len(feat) == int((liked & (full[0].inter_feat["item_length"] > 0)).sum())
            assert (test._dataset.inter_feat["item_length"] >= 1).all()  # an empty history read at position 0
        else:
            assert len(feat) == int(liked.sum())
        matrix = train._dataset.inter_matrix(form="coo")
        pairs = set(zip(full[0].inter_feat["user_id"][liked].tolist(), full[0].inter_feat["item_id"][liked].tolist()))
        assert set(zip(matrix.row.tolist(), matrix.col.tolist())) <= pairs
        negatives = config["train_neg_sample_args"]["distribution"]
        assert negatives == ("uniform" if name == "BPR" else "none")
    batch = next(iter(data_preparation(tiny_config("BPR"), CollmDataset(tiny_config("BPR")))[0]))
    assert "neg_item_id" in batch.interaction


def test_recbole_models_score_labeled_rows(tmp_path):
    for name in ("BPR", "SASRec"):  # pairwise on liked rows; next-item with empty histories read at position 0
        result = run_recbole_collm(model=name, dataset="tiny", config_file_list=[TINY_YAML],
                                   config_dict={"epochs": 1, "checkpoint_dir": str(tmp_path / name), "state": "WARNING"})
        rows = result["test_rows"]
        assert result["test_result"]["auc"] == pytest.approx(roc_auc_score(rows["label"], rows["score"]), abs=1e-4)


def test_recbole_protocol_when_asked(tmp_path):
    """protocol: recbole: RecBole's dataset, split, sampling and full-sort metrics."""
    result = run_recbole_collm(model="BPR", dataset="tiny", config_file_list=[TINY_YAML],
                               config_dict={"protocol": "recbole", "epochs": 1, "checkpoint_dir": str(tmp_path), "state": "WARNING"})
    assert set(result["test_result"]) == {"recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10"}
    config = Config(model="SASRec", dataset="tiny", config_file_list=[TINY_YAML], config_dict={"protocol": "recbole"})
    assert config["eval_args"]["order"] == "TO" and config["train_neg_sample_args"]["distribution"] == "none"


def test_a_knowledge_aware_model_is_refused_before_data(monkeypatch):
    built = []
    monkeypatch.setattr(CollmDataset, "__init__", lambda *a, **k: built.append(1))
    with pytest.raises(InputError, match=r"^model KGAT: a knowledge-aware model needs a knowledge graph \(tiny.kg and "
                                         r".link files\) and RecBole's knowledge dataset; run it with "
                                         r"recbole.quick_start.run_recbole on such a dataset$"):
        Config(model="KGAT", dataset="tiny", config_file_list=[TINY_YAML])
    assert not built


@pytest.mark.parametrize("name, why", [
    ("SASRecCPR", "RecBole's SASRecCPR ranks the full catalogue only \\(its predict is disabled\\), so it cannot score "
                  "labeled rows; run it with --protocol=recbole"),
    ("DIEN", "RecBole's DIEN trains on what its own dataset class builds \\(RecBole's DIENDataset\\); run it with --protocol=recbole"),
    ("FDSA", "reads the item features \\['class'\\] \\(selected_features / item_attribute\\), which load_col.item does not "
             "load \\(\\['item_id', 'movie_title'\\]\\); add them to load_col.item"),
    ("KSR", "reads .*tiny.ent \\(additional_feat_suffix: ent, e.g. pretrained entity vectors\\), which is not there"),
])
def test_models_that_cannot_run_here_are_refused_when_the_settings_are_read(name, why):
    with pytest.raises(InputError, match=f"^model {name}: {why}$"):
        tiny_config(name, protocol="recbole" if name == "KSR" else "labeled")


def test_a_model_needing_a_missing_package_is_one_line():
    if importlib.util.find_spec("faiss") is not None:
        pytest.skip("faiss is installed here: RecBole's NCL runs")
    with pytest.raises(InputError, match=r"^model NCL: needs the package 'faiss' \(pip install faiss-cpu\), which is not installed$"):
        tiny_config("NCL")


# --- no shadowing; old checkpoints --------------------------------------------------------------
def test_no_plugin_model_takes_a_recbole_name():
    from benchmarks.recbole_models import recbole_models

    recbole_names = {name for _, name in recbole_models()}
    plugin_names = set()
    for package in MODEL_PACKAGES:
        folder = os.path.join(os.path.dirname(__import__("recbole_collm").__file__), "model", package)
        for file in os.listdir(folder):
            if file.endswith(".py") and file != "__init__.py":
                module = __import__(f"recbole_collm.model.{package}.{file[:-3]}", fromlist=["x"])
                plugin_names |= {n for n, v in vars(module).items() if isinstance(v, type) and n.lower() == file[:-3]}
    assert plugin_names and not plugin_names & recbole_names
    assert get_model("SASRec") is RecBoleSASRec and get_model("SASRecCTR") is SASRecCTR


def test_cf_checkpoint_auto_in_any_case_is_resolved(tiny_llm_dir, tmp_path):
    from recbole_collm.quick_start import prepare

    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint="AUTO", stage="cie")
    assert config["cf_checkpoint"] == "auto"
    _, _, model, _ = prepare(config)
    assert config["cf_checkpoint"].endswith(".pth") and model.cie.source.name == "MF"


def test_unwritable_checkpoint_dir_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match=rf"^checkpoint_dir: '{blocker}/saved' cannot be written \({blocker} is not a writable folder\)$"):
        tiny_config("MF", checkpoint_dir=str(blocker / "saved"))


def test_comparison_without_users_of_both_labels_says_undefined():
    uid = np.array([1, 1, 2, 2])
    labels = np.array([1, 1, 0, 0])
    comparison = paired_bootstrap(uid, labels, np.array([.1, .2, .3, .4]), np.array([.4, .3, .2, .1]), metric="uauc")
    assert str(comparison) == "UAUC undefined (no comparison: 0 users with both labels in 4 rows)"
    assert comparison.verdict == "undefined"
