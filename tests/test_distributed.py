"""Several processes on RecBole's DDP (gloo on the CPU): the same test rows, each once; the scores
gathered from the processes are the saved model's own, row by row; one checkpoint."""
import socket

import pytest

from recbole_collm import get_trainer
from recbole_collm.errors import InputError
from recbole_collm.quick_start import run
from recbole_collm.restore import restore
from tests.conftest import TINY_YAML


def rows(result: dict) -> list[tuple]:
    return sorted(zip(result["test_rows"]["user"], result["test_rows"]["item"], result["test_rows"]["label"]))


def scores_in_one_process(model_file: str) -> tuple[float, list[tuple]]:
    """The saved model's test AUC and its (user, item, label, score) rows, scored in this process."""
    single = {"single_spec": True, "nproc": 1, "world_size": 1, "local_rank": 0}  # the saved config is the DDP run's
    restored = restore(model_file, loaders=True, settings=single)
    config, model, dataset, test = restored.config, restored.model, restored.dataset, restored.splits[2]
    result = get_trainer(config["MODEL_TYPE"], config["model"])(config, model).evaluate(test, load_best_model=False)
    users, items = (dataset.id2token(field, result.rows[key]) for field, key in ((dataset.uid_field, "uid"),
                                                                                    (dataset.iid_field, "iid")))
    return result["auc"], sorted(zip(users, items, result.rows["label"].tolist(), result.rows["score"].tolist()))


def assert_gathered_scores_are_the_models(run_result: dict) -> None:
    """The AUC and per-row scores the processes gathered = the saved model scored in one process:
    no row lost, repeated or given another row's score."""
    auc, mine = scores_in_one_process(run_result["model_file"])
    gathered = run_result["test_rows"]
    theirs = sorted(zip(gathered["user"], gathered["item"], gathered["label"], gathered["score"]))
    assert [row[:3] for row in theirs] == [row[:3] for row in mine]
    assert [row[3] for row in theirs] == pytest.approx([row[3] for row in mine], abs=1e-5)
    assert run_result["test_result"]["auc"] == pytest.approx(auc, abs=1e-4)


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.parametrize("mode", ["uni9", "full"])
def test_ranking_under_several_processes_is_one_error_before_any_process_starts(mode, tmp_path):
    """RecBole averages ranking metrics per process (not one figure over every query): refused."""
    split = {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": None, "mode": mode}
    with pytest.raises(InputError, match=r"^eval_args.mode: a ranking evaluation \(uniN, popN, full\) under several processes"):
        run("MF", "tiny", [TINY_YAML], {"eval_args": split, "metrics": ["Hit"], "topk": [5], "valid_metric": "Hit@5",
                                        "checkpoint_dir": str(tmp_path), "state": "WARNING"}, nproc=2, port=free_port())
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


@pytest.mark.slow
def test_mf_on_two_processes_scores_every_test_row_once_and_matches_one_process(tmp_path):
    settings = {"epochs": 8, "train_batch_size": 32, "learning_rate": 0.01, "state": "WARNING", "seed": 11,
                "stopping_step": 100}
    one = run("MF", "tiny", [TINY_YAML], {**settings, "checkpoint_dir": str(tmp_path / "one")})
    two = run("MF", "tiny", [TINY_YAML], {**settings, "checkpoint_dir": str(tmp_path / "two")}, nproc=2,
              ip="127.0.0.1", port=free_port())
    assert len(two["test_rows"]["label"]) == len(one["test_rows"]["label"])  # no padding repeats
    assert rows(two) == rows(one)
    assert_gathered_scores_are_the_models(two)
    assert two["test_result"]["warm_rows"] == one["test_result"]["warm_rows"]
    written = sorted(p.name for p in (tmp_path / "two").glob("*.pth"))
    best = [w for w in written if not w.endswith("-last.pth")]
    assert len(best) == 1 and written == sorted([best[0], best[0].replace(".pth", "-last.pth")])  # process 0's


@pytest.mark.slow
def test_collm_both_stages_on_two_processes(tiny_llm_dir, tmp_path):
    """Both stages (the DDP wrapper is rebuilt for the CIE stage's parameters), evaluation gathered."""
    settings = {"llm_path": str(tiny_llm_dir), "train_rows_limit": 32, "eval_rows_limit": 24, "epochs": 1,
                "cie_epochs": 2, "lora_train_rows": None, "train_batch_size": 8, "warmup_steps": 0,
                "learning_rate": 0.01, "cie_learning_rate": 0.01, "cf_checkpoint": None, "cf_model": "MF",
                "state": "WARNING", "show_progress": False, "seed": 5, "share_prefixes": False}
    one = run("CoLLM", "tiny", [TINY_YAML], {**settings, "checkpoint_dir": str(tmp_path / "one")})
    two = run("CoLLM", "tiny", [TINY_YAML], {**settings, "checkpoint_dir": str(tmp_path / "two")}, nproc=2,
              ip="127.0.0.1", port=free_port())
    assert rows(two) == rows(one) and len(two["test_rows"]["label"]) == 24
    assert_gathered_scores_are_the_models(two)
    written = [p.name for p in (tmp_path / "two").glob("*.pth")]
    finals = [w for w in written if not w.endswith(("-last.pth", "-lora.pth"))]
    assert len(finals) == 1 and f"{finals[0][:-4]}-lora.pth" in written  # process 0's, one per stage


@pytest.mark.slow
def test_a_two_process_run_resumes_to_the_same_result(tmp_path):
    """Stopped after 2 of 4 epochs (its -last.pth) and resumed on two processes: the result of an
    unbroken 4-epoch run (DDP's sampler draws each epoch's order from the epoch number)."""
    settings = {"train_batch_size": 32, "learning_rate": 0.01, "state": "WARNING", "seed": 11, "stopping_step": 100}
    reference = run("MF", "tiny", [TINY_YAML], {**settings, "epochs": 4, "checkpoint_dir": str(tmp_path / "ref")},
                    nproc=2, ip="127.0.0.1", port=free_port())
    run("MF", "tiny", [TINY_YAML], {**settings, "epochs": 2, "checkpoint_dir": str(tmp_path / "cut")},
        nproc=2, ip="127.0.0.1", port=free_port())
    last = next((tmp_path / "cut").glob("*-last.pth"))
    resumed = run("MF", "tiny", [TINY_YAML], {**settings, "epochs": 4, "checkpoint_dir": str(tmp_path / "cut"),
                                              "resume": str(last)}, nproc=2, ip="127.0.0.1", port=free_port())
    assert resumed["test_result"]["auc"] == pytest.approx(reference["test_result"]["auc"], abs=1e-6)
    assert resumed["test_rows"]["score"] == pytest.approx(reference["test_rows"]["score"], abs=1e-6)
