"""The paper-table study on the tiny dataset and a tiny LLM: every row's wiring (ensemble,
UI-token, T1/T2/T3), outputs, and resuming without recomputing."""
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from benchmarks import study
from recbole_collm.files import read_checkpoint
from tests.conftest import TINY_YAML


def lora(state):
    return {k: v for k, v in state.items() if "lora_" in k}


@pytest.fixture(scope="module")
def tiny_study(tiny_llm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    common = {"eval_rows_limit": 30, "epochs": 2, "state": "WARNING", "show_progress": False, "seed": 2023}
    llm = {"llm_path": str(tiny_llm_dir), "train_rows_limit": 32, "epochs": 1, "eval_step": 0, "lora_dropout": 0.0,
           "warmup_steps": 0, "learning_rate": 0.01, "cie_epochs": None, "cie_learning_rate": None}
    results = study.run_study(["tiny"], common, llm, str(out), config_files={"tiny": [TINY_YAML]}, resamples=50)
    return out, results["tiny"], (common, llm)


def test_every_row_of_the_paper_table_is_produced(tiny_study):
    out, records, _ = tiny_study
    expected = [r.name for r in study.plan()] + [name for name, _, _ in study.ENSEMBLES]
    assert list(records) == expected
    for name, record in records.items():
        if "test_rows" in record:  # each row's AUC is the AUC of the scores it recorded
            rows = record["test_rows"]
            assert record["test_result"]["auc"] == pytest.approx(roc_auc_score(rows["label"], rows["score"]), abs=1e-4), name
    table = (out / "table.md").read_text()
    assert all(f"| {name} |" in table for name in expected)
    assert "Efficiency" in table and "inference ratio" in table
    # each claim with its interval, from the two runs' scores of the same rows
    from recbole_collm.evaluator.compare import paired_bootstrap

    mine, theirs = records["CoLLM-MF"]["test_rows"], records["MF"]["test_rows"]
    c = paired_bootstrap(np.asarray(mine["user"]), np.asarray(mine["label"]), np.asarray(mine["score"]), np.asarray(theirs["score"]), "auc", resamples=50)
    assert (f"- CoLLM-MF > MF on AUC: {c.verdict} ({c.a:.4f} vs {c.b:.4f}, {c.difference:+.4f}, "
            f"95% interval [{c.low:+.4f}, {c.high:+.4f}], {c.users} users)") in table
    assert (out / "table.csv").read_text().count("\n") == len(expected) + 1
    assert (out / "warm_cold_tiny.png").stat().st_size > 1000


def test_all_runs_score_the_same_test_rows(tiny_study):
    _, records, _ = tiny_study
    keys = {name: list(zip(r["test_rows"]["user"], r["test_rows"]["item"])) for name, r in records.items() if "test_rows" in r}
    first = next(iter(keys.values()))
    assert len(first) == 30 and all(k == first for k in keys.values())


def test_ensemble_averages_probabilities_of_the_same_rows(tiny_study):
    _, records, _ = tiny_study
    mf, llm = records["MF"]["test_rows"], records["CoLLM-MF"]["test_rows"]
    assert list(zip(mf["user"], mf["item"])) == list(zip(llm["user"], llm["item"]))
    average = [(s + t) / 2 for s, t in zip(mf["score"], llm["score"])]
    expected = roc_auc_score(mf["label"], average)
    assert records["MF + CoLLM-MF"]["test_result"]["auc"] == pytest.approx(expected, abs=1e-4)  # RecBole rounds to 4 places
    assert records["MF + CoLLM-MF"]["test_rows"]["score"] == pytest.approx(average)  # what the report compares
    # not one run's result under another name: with scores whose average ranks the rows unlike
    # either run (the tiny runs' own scores are too close to 0.5 to show it), the ensemble's AUC
    # is the average's
    rng = np.random.default_rng(0)
    first = {**records["MF"], "test_rows": {**mf, "score": list(rng.random(len(mf["label"])))}}
    second = {**records["CoLLM-MF"], "test_rows": {**llm, "score": list(rng.random(len(llm["label"])))}}
    context = study.evaluation_context("tiny", tiny_study[2][0], {"tiny": [TINY_YAML]})
    result = study.ensemble(first, second, context)["test_result"]["auc"]
    mixed = [(s + t) / 2 for s, t in zip(first["test_rows"]["score"], second["test_rows"]["score"])]
    aucs = [roc_auc_score(mf["label"], r["test_rows"]["score"]) for r in (first, second)]
    assert result == pytest.approx(roc_auc_score(mf["label"], mixed), abs=1e-4)
    assert all(abs(result - auc) > 1e-3 for auc in aucs)


def test_stage_two_rows_keep_tallrecs_lora_and_train_their_own_part(tiny_study):
    _, records, _ = tiny_study
    state = {name: read_checkpoint(records[name]["model_file"])["state_dict"] for name in records if "model_file" in records[name]}
    tallrec_lora = lora(state["TALLRec"])
    assert any(v.abs().sum() > 0 for k, v in tallrec_lora.items() if "lora_B" in k)  # TALLRec trained
    for name in ("CoLLM-MF", "CoLLM-DIN", "w/ UI-token", "T1 (tune CF model)", "T2 (CF from scratch)"):
        assert lora(state[name]).keys() == tallrec_lora.keys()
        assert all(torch.equal(lora(state[name])[k], v) for k, v in tallrec_lora.items()), name  # frozen
    # UI-token: per-user / per-item rows in the LLM's width, no CIE MLP, no CF model
    ui = {k for k in state["w/ UI-token"] if k.startswith("cie.")}
    assert ui == {"cie.user.weight", "cie.item.weight"}
    # T3 trains LoRA from scratch together with the MLP: its LoRA is its own
    t3 = lora(state["T3 (one step)"])
    assert any(not torch.equal(t3[k], v) for k, v in tallrec_lora.items())
    assert any(v.abs().sum() > 0 for k, v in t3.items() if "lora_B" in k)


def test_t1_tunes_the_cf_model_t2_trains_mf_from_scratch(tiny_study):
    _, records, _ = tiny_study
    mf = read_checkpoint(records["MF"]["model_file"])["state_dict"]
    frozen = read_checkpoint(records["CoLLM-MF"]["model_file"])["state_dict"]
    tuned = read_checkpoint(records["T1 (tune CF model)"]["model_file"])["state_dict"]
    scratch = read_checkpoint(records["T2 (CF from scratch)"]["model_file"])["state_dict"]
    key = "cie.source.model.user_embedding.weight"
    assert torch.equal(frozen[key], mf["user_embedding.weight"])
    assert not torch.equal(tuned[key], mf["user_embedding.weight"])
    assert "cie.source.user.weight" in scratch and key not in scratch


def test_a_second_call_recomputes_nothing(tiny_study, monkeypatch):
    out, records, (common, llm) = tiny_study

    def refuse(**kwargs):
        raise AssertionError(f"run recomputed: {kwargs.get('model')}")

    monkeypatch.setattr("recbole_collm.quick_start.run_recbole_collm", refuse)
    again = study.run_study(["tiny"], common, llm, str(out), config_files={"tiny": [TINY_YAML]}, resamples=50)["tiny"]
    assert again["CoLLM-MF"]["test_result"] == records["CoLLM-MF"]["test_result"]
    saved = json.loads((out / "runs" / "tiny" / "CoLLM_MF.json").read_text())
    assert np.allclose(saved["test_rows"]["score"], records["CoLLM-MF"]["test_rows"]["score"])


def test_report_only_writes_the_table_from_finished_runs(tiny_study, tmp_path, monkeypatch):
    out, records, (common, llm) = tiny_study
    monkeypatch.setattr("recbole_collm.quick_start.run_recbole_collm", lambda **kw: pytest.fail("computed"))
    partial = tmp_path / "partial"
    (partial / "runs" / "tiny").mkdir(parents=True)
    for name in ("MF", "TALLRec"):
        (partial / "runs" / "tiny" / f"{study.slug(name)}.json").write_text((out / "runs" / "tiny" / f"{study.slug(name)}.json").read_text())
    report = study.run_study(["tiny"], common, llm, str(partial), config_files={"tiny": [TINY_YAML]}, report_only=True, resamples=50)["tiny"]
    assert list(report) == ["MF", "TALLRec", "MF + TALLRec"]
    assert "| CoLLM-MF |" not in (partial / "table.md").read_text()
