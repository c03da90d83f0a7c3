"""benchmarks/llm_recommenders.py end to end on the tiny dataset (tiny random LLaMA): every run
is evaluated on the same queries under each protocol it supports, and the table is written."""
import json
import subprocess
import sys

import numpy as np
import pytest

from recbole_collm.evaluator.compare import paired_bootstrap_mean
from tests.conftest import ROOT, TINY_YAML


def test_benchmark_ranks_every_model_on_the_same_queries(tiny_llm_dir, tmp_path):
    llm = [f"{run}:llm_path={tiny_llm_dir}" for run in ("CoLLM-MF", "A-LLMRec", "CLLM4Rec")]
    command = [sys.executable, "-m", "benchmarks.llm_recommenders", "--datasets", "tiny", "--negatives", "9",
               "--full-topk", "5", "20", "--config-files", TINY_YAML, "--test-rows", "40", "--out", str(tmp_path),
               "--only", "Pop", "MF", "CoLLM-MF", "A-LLMRec", "CLLM4Rec",
               "--set", "state=WARNING", "show_progress=False", "epochs=1", *llm, "CoLLM-MF:train_rows_limit=16",
               "A-LLMRec:train_rows_limit=32", "CLLM4Rec:train_rows_limit=32", "A-LLMRec:align_epochs=1",
               "CLLM4Rec:pretrain_epochs=1", "A-LLMRec:candidate_num=6"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "tiny.json").read_text())
    models = summary["models"]
    assert set(models) == {"Pop", "MF", "CoLLM-MF", "A-LLMRec", "A-LLMRec, no soft tokens", "CLLM4Rec", "CLLM4Rec, users' tokens shuffled"}
    assert len({m["queries"]["candidates"] for m in models.values()}) == 1  # the same candidate sets for all
    assert models["MF"]["queries"]["full"] == models["CLLM4Rec"]["queries"]["full"]
    assert "full" not in models["A-LLMRec"]["results"] and "full" not in models["CoLLM-MF"]["results"]
    # the reference without soft tokens ranks the same queries as the trained model, differently
    bare, trained = (models[n]["per_query"]["candidates"] for n in ("A-LLMRec, no soft tokens", "A-LLMRec"))
    assert bare["user"] == trained["user"] and bare["first_hit"] != trained["first_hit"]
    diagnostics = summary["diagnostics"]
    queries = models["A-LLMRec"]["queries"]["candidates"]
    assert diagnostics["shuffle_queries"] == min(100, queries) and diagnostics["catalogue"] == 30  # the tiny catalogue
    assert f"in {diagnostics['shuffle_changes_top']:.1%} of {diagnostics['shuffle_queries']} queries" in done.stdout
    for name, model in models.items():
        hit = model["results"]["candidates"]
        assert hit["hit@1"] <= hit["hit@10"] == 1.0  # 10 candidates per query: every target is in the top 10
        assert f"| {name} | {hit['hit@1']:.4f} | 1.0000 |" in done.stdout
        # the per-query record each comparison resamples reproduces the evaluator's figure
        first = np.array(model["per_query"]["candidates"]["first_hit"])
        assert round(float((first == 0).mean()), 4) == pytest.approx(hit["hit@1"])
        assert len(first) == model["queries"]["candidates"] and (first >= 0).all()
    found = {(c["model"], c["reference"]): c for c in summary["comparisons"]}
    # A-LLMRec's SASRec and stage-1 rows are not in this run; RecBole's Pop ranks the same per-row queries
    assert set(found) == {("CLLM4Rec", "MF"), ("CoLLM-MF", "MF"), ("A-LLMRec", "A-LLMRec, no soft tokens"),
                          ("CLLM4Rec", "CLLM4Rec, users' tokens shuffled"), ("A-LLMRec", "Pop"), ("CLLM4Rec", "Pop")}
    shuffled, own = (models[n]["per_query"]["full"] for n in ("CLLM4Rec, users' tokens shuffled", "CLLM4Rec"))
    assert shuffled["user"] == own["user"] and shuffled["first_hit"] != own["first_hit"]
    cllm = found[("CLLM4Rec", "MF")]
    recall = {n: np.array(models[n]["per_query"]["full"]["first_hit"]) for n in ("CLLM4Rec", "MF")}
    recall = {n: (first >= 0) & (first < 20) for n, first in recall.items()}
    assert cllm["metric"] == "recall@20" and cllm["model_value"] == pytest.approx(recall["CLLM4Rec"].mean())
    # the interval is the paired bootstrap over the queries' users of these per-query values
    c = paired_bootstrap_mean(own["user"], recall["CLLM4Rec"], recall["MF"], "recall@20")
    assert (cllm["difference"], cllm["low"], cllm["high"]) == pytest.approx((c.difference, c.low, c.high))
    assert f"- CLLM4Rec above MF (full): {cllm['verdict']} — RECALL@20" in done.stdout


def test_allmrec_rank_by_ranks_one_models_validation_queries_under_each_score(tiny_llm_dir, sasrec_checkpoint, tmp_path):
    command = [sys.executable, "-m", "benchmarks.allmrec_rank_by", "--dataset", "tiny", "--config-files", TINY_YAML,
               "--valid-rows", "40", "--out", str(tmp_path), "--set", f"llm_path={tiny_llm_dir}", f"cf_checkpoint={sasrec_checkpoint}",
               "state=WARNING", "show_progress=False", "train_rows_limit=32", "epochs=1", "align_epochs=1", "candidate_num=6",
               "llm_compute_dtype=float32", "topk=[1, 10]",
               "eval_args={split: {RS: [0.8, 0.1, 0.1]}, order: TO, group_by: null, mode: uni9}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "tiny.json").read_text())["results"]
    assert list(results) == ["sum", "relative", "mean"]  # the default first: the reference
    users = json.loads((tmp_path / "tiny.json").read_text())["user"]
    for name, figures in results.items():
        first = np.array(figures["first_hit"])
        assert len(first) == len(users) and (first >= 0).all() and (first < 10).all()  # 10 candidates: all in the top 10
        assert figures["hit@10"] == 1.0 and figures["hit@1"] == pytest.approx(round(float((first == 0).mean()), 4))
        assert f"| {name} | {figures['hit@1']:.4f} | 1.0000 |" in done.stdout
    for name in ("relative", "mean"):
        versus = results[name]["vs_sum"]
        first = {k: np.array(results[k]["first_hit"]) for k in ("sum", name)}
        c = paired_bootstrap_mean(users, first[name] == 0, first["sum"] == 0, "hit@1")
        assert versus["difference"] == pytest.approx((first[name] == 0).mean() - (first["sum"] == 0).mean())
        assert (versus["low"], versus["high"]) == pytest.approx((c.low, c.high))
