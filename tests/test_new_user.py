"""What a new user meets through the command line: bad input and faults end in one clear line
(exit 2, no traceback), nothing is overwritten, and checkpoints keep meaning what they meant."""
import csv
import logging
import os
import shutil

import numpy as np
import pytest
import torch

from recbole_collm import cli, run_recbole_collm
from recbole_collm.files import RunLock
from recbole_collm.quick_start import find_resume_file
from recbole_collm.restore import restore
from tests.conftest import ROOT, TINY_YAML, tiny_config

TINY = ROOT / "tests" / "data" / "tiny"


def cli_run(monkeypatch, capsys, *argv) -> tuple[int, str]:
    """``recbole-collm ARGV`` in this process: exit status and stderr."""
    monkeypatch.setattr("sys.argv", ["recbole-collm", *argv])
    status = cli.main()
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return status, err


def serve(monkeypatch, capsys, command: str, checkpoint, out, *args) -> tuple[int, str]:
    """``recbole-collm score|recommend --checkpoint=... --out=... ARGS`` through :func:`cli_run`."""
    return cli_run(monkeypatch, capsys, command, f"--checkpoint={checkpoint}", f"--out={out}", *args)


def one_line(err: str) -> str:
    """The error line (the last of stderr: RecBole may log warnings before it)."""
    return err.splitlines()[-1]


def train_args(tmp_path, *extra, data=None) -> list[str]:
    return ["--model=MF", "--dataset=tiny", f"--config_files={TINY_YAML}", f"--data_path={data or TINY.parent}",
            f"--checkpoint_dir={tmp_path / 'saved'}", "--state=WARNING", "--epochs=1", *extra]


def copy_tiny(tmp_path, name="data"):
    shutil.copytree(TINY, tmp_path / name / "tiny")
    return tmp_path / name


def read_tsv(path):
    with open(path) as f:
        return list(csv.reader(f, delimiter="\t"))


# --- score and recommend: every option checked ---------------------------------------------------
@pytest.mark.parametrize("command,extra,message", [
    ("score", ["--batch_size", "-1"], "--batch_size: -1 must be a whole number ≥ 1"),
    ("score", ["--batch_size", "0"], "--batch_size: 0 must be a whole number ≥ 1"),
    ("recommend", ["--topk", "-1"], "--topk: -1 must be a whole number ≥ 1"),
    ("recommend", ["--topk", "0"], "--topk: 0 must be a whole number ≥ 1"),
    ("recommend", ["--candidates", "pop0"], "--candidates: 'pop0' holds no items; popN needs N ≥ 1"),
])
def test_score_and_recommend_refuse_empty_requests(mf_checkpoint, tmp_path, monkeypatch, capsys, command, extra, message):
    given = tmp_path / "input.tsv"
    given.write_text("1\t1\n" if command == "score" else "1\n")
    option = "--pairs" if command == "score" else "--users"
    status, err = serve(monkeypatch, capsys, command, mf_checkpoint, tmp_path / "out.tsv", f"{option}={given}", *extra)
    assert status == 2 and one_line(err) == f"recbole-collm: error: {message}"
    assert not (tmp_path / "out.tsv").exists()


@pytest.mark.parametrize("content,message", [
    ("", "pairs.tsv: no pairs; expected lines of 'user<TAB>item[<TAB>timestamp]'"),
    ("user_id\titem_id\n\n", "pairs.tsv: no pairs; expected lines of 'user<TAB>item[<TAB>timestamp]'"),
    ("1\t1\tnan\n", "pairs.tsv, line 1: timestamp 'nan' is not a finite number"),
    ("1\t1\t5\n\n\n1\t2\tinf\n", "pairs.tsv, line 4: timestamp 'inf' is not a finite number"),
    ("1\t1\n\n\n\n\nnobody\t1\n\n\n\n2\tnothing\n", "(lines 6, 10)"),  # blank lines counted
])
def test_score_pairs_file_errors_name_the_right_line(mf_checkpoint, tmp_path, monkeypatch, capsys, content, message):
    (tmp_path / "pairs.tsv").write_text(content)
    status, err = serve(monkeypatch, capsys, "score", mf_checkpoint, tmp_path / "out.tsv", f"--pairs={tmp_path / 'pairs.tsv'}")
    assert status == 2 and one_line(err).startswith("recbole-collm: error: ") and one_line(err).endswith(message)


def test_out_equal_to_pairs_is_refused_and_the_input_kept(mf_checkpoint, tmp_path, monkeypatch, capsys):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("1\t1\t1000001402\n")
    status, err = serve(monkeypatch, capsys, "score", mf_checkpoint, pairs, f"--pairs={pairs}")
    assert status == 2 and one_line(err).endswith(f"--out: '{pairs}' is the --pairs file; writing it would overwrite the input")
    assert pairs.read_text() == "1\t1\t1000001402\n"
    status, err = serve(monkeypatch, capsys, "score", mf_checkpoint, tmp_path / "no" / "such" / "out.tsv", f"--pairs={pairs}")
    assert status == 2 and one_line(err).endswith(f"--out: folder '{tmp_path / 'no' / 'such'}' does not exist")


def test_recommend_refuses_an_empty_users_file(mf_checkpoint, tmp_path, monkeypatch, capsys):
    (tmp_path / "empty.txt").write_text("\n")
    status, err = serve(monkeypatch, capsys, "recommend", mf_checkpoint, tmp_path / "out.tsv", f"--users={tmp_path / 'empty.txt'}")
    assert status == 2 and one_line(err).endswith("empty.txt: no user tokens; expected one per line")


@pytest.mark.parametrize("content", ["", "not a checkpoint"])
def test_an_empty_or_truncated_checkpoint_is_one_line(mf_checkpoint, tmp_path, monkeypatch, capsys, content):
    bad = tmp_path / "bad.pth"
    if content:
        bad.write_bytes(open(mf_checkpoint, "rb").read()[:4000])  # truncated
    else:
        bad.write_bytes(b"")
    (tmp_path / "pairs.tsv").write_text("1\t1\n")
    status, err = serve(monkeypatch, capsys, "score", bad, tmp_path / "out.tsv", f"--pairs={tmp_path / 'pairs.tsv'}")
    assert status == 2 and f"checkpoint file '{bad}' cannot be read (truncated, empty or not a .pth" in one_line(err)
    status, err = cli_run(monkeypatch, capsys, *train_args(tmp_path, f"--resume={bad}"))
    assert status == 2 and f"checkpoint file '{bad}' cannot be read" in one_line(err)
    args = [a.replace("--model=MF", "--model=CoLLM") for a in train_args(tmp_path, f"--cf_checkpoint={bad}")]
    status, err = cli_run(monkeypatch, capsys, *args)  # refused before any LLM is loaded
    assert status == 2 and f"checkpoint file '{bad}' cannot be read" in one_line(err)


# --- checkpoints keep their ids -------------------------------------------------------------------
def test_reordered_rows_score_the_same_and_a_new_user_is_refused(tmp_path, monkeypatch, capsys):
    """RecBole numbers tokens by first appearance: the same rows in another order after training
    must not change a score; a user the model never saw is one line."""
    data = copy_tiny(tmp_path)
    result = run_recbole_collm(model="MF", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "data_path": str(data), "epochs": 2, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING"})
    (tmp_path / "pairs.tsv").write_text("1\t1\n38\t23\n5\t7\n")
    args = ["score", f"--checkpoint={result['model_file']}", f"--pairs={tmp_path / 'pairs.tsv'}"]
    assert cli_run(monkeypatch, capsys, *args, f"--out={tmp_path / 'before.tsv'}")[0] == 0
    inter = data / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    assert cli_run(monkeypatch, capsys, *args, f"--out={tmp_path / 'after.tsv'}")[0] == 0
    assert read_tsv(tmp_path / "after.tsv") == read_tsv(tmp_path / "before.tsv")
    restored = restore(result["model_file"])  # ids as at training time, histories from the reordered file
    assert restored.dataset.field2id_token["user_id"].tolist() == result_tokens(result["model_file"])
    inter.write_text(inter.read_text() + "999\t1\t5\t1000009999\n")
    status, err = cli_run(monkeypatch, capsys, *args, f"--out={tmp_path / 'new.tsv'}")
    assert status == 2 and one_line(err).endswith(
        "tiny: 1 user_id token(s) the checkpoint was not trained with (e.g. '999'); the data changed since it was saved — train again on it")


def result_tokens(path) -> list[str]:
    return torch.load(path, weights_only=False)["token_maps"]["user_id"]


def test_resuming_on_other_data_is_one_line(tmp_path, monkeypatch, capsys):
    data = copy_tiny(tmp_path)
    inter = data / "tiny" / "tiny.inter"
    header, *rows = inter.read_text().splitlines()
    inter.write_text("\n".join([header, *rows[300:], *rows[:300]]) + "\n")  # other ids for the same tokens
    run_recbole_collm(model="MF", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "data_path": str(data), "epochs": 1, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING"})
    last = next((tmp_path / "saved").glob("*-last.pth"))
    status, err = cli_run(monkeypatch, capsys, *train_args(tmp_path, f"--resume={last}"))
    assert status == 2 and "was trained on other data (dataset 'tiny'" in one_line(err)


# --- resume: live runs and kept settings ----------------------------------------------------------
def test_resume_auto_skips_a_live_run_and_a_live_run_cannot_be_resumed(tmp_path):
    saved = tmp_path / "saved"
    saved.mkdir()
    old, live = saved / "MF-a-1-last.pth", saved / "MF-b-2-last.pth"
    old.write_bytes(b"x")
    live.write_bytes(b"x")
    os.utime(old, (1, 1))  # the live run's file is the newest
    config = tiny_config("MF", tmp_path, resume="auto")
    assert find_resume_file(config) == str(live)
    with RunLock(saved / "MF-b-2.pth"):
        assert find_resume_file(config) == str(old)
        with pytest.raises(Exception, match="is still going"):
            RunLock(live).__enter__()
    assert find_resume_file(config) == str(live)  # released


def test_a_resume_says_which_settings_its_checkpoint_keeps(tmp_path, caplog):
    run_recbole_collm(model="MF", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "epochs": 1, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING", "learning_rate": 0.01})
    last = next((tmp_path / "saved").glob("*-last.pth"))
    with caplog.at_level(logging.WARNING):
        run_recbole_collm(model="MF", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
            "epochs": 2, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING", "learning_rate": 0.5,
            "resume": str(last)})
    assert (f"resume: learning_rate stays 0.01 (the optimizer state in {last.name} continues); "
            "this run's learning_rate=0.5 is not used") in caplog.text


# --- data files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("edit,message", [
    (lambda h, rows: ("user_id\titem_id:token\trating:float\ttimestamp:float", rows),
     "tiny.inter: header column 'user_id' must be name:type with type one of token, token_seq, float, float_seq"),
    (lambda h, rows: (h, [rows[0], "38\t24\tfive\t1000001402", *rows[1:]]),
     "tiny.inter, line 3, column 'rating': 'five' is not a finite number"),
    (lambda h, rows: (h, [rows[0], rows[1], "38\t24\t4\tyesterday", *rows[2:]]),
     "tiny.inter, line 4, column 'timestamp': 'yesterday' is not a finite number"),
    (lambda h, rows: (h, [rows[0], "38\t24\t4\tnan", *rows[1:]]),
     "tiny.inter, line 3, column 'timestamp': 'nan' is not a finite number"),
    (lambda h, rows: (h, [rows[0], "38\t24\t4\t", *rows[1:]]),
     "tiny.inter, line 3, column 'timestamp': '' is not a finite number"),
])
def test_bad_atomic_values_name_file_line_and_column(tmp_path, monkeypatch, capsys, edit, message):
    data = copy_tiny(tmp_path)
    inter = data / "tiny" / "tiny.inter"
    header, *rows = inter.read_text().splitlines()
    header, rows = edit(header, rows)
    inter.write_text("\n".join([header, *rows]) + "\n")
    status, err = cli_run(monkeypatch, capsys, *train_args(tmp_path, data=data))
    assert status == 2 and one_line(err).endswith(message)


@pytest.mark.parametrize("label", [0, 1])
def test_one_label_data_is_one_line_not_a_missing_checkpoint(tmp_path, monkeypatch, capsys, label):
    data = copy_tiny(tmp_path)
    inter = data / "tiny" / "tiny.inter"
    header, *rows = inter.read_text().splitlines()
    rows = [r.split("\t") for r in rows]
    inter.write_text("\n".join([header, *("\t".join([u, i, "5" if label else "1", t]) for u, i, _, t in rows)]) + "\n")
    status, err = cli_run(monkeypatch, capsys, *train_args(tmp_path, data=data))
    assert status == 2 and one_line(err).endswith(
        f"tiny: the train split's {int(len(rows) * 0.8)} row(s) all have label {label}; both 0 and 1 are needed (the model learns from both)")


def test_one_sampled_eval_row_is_one_line(tmp_path, monkeypatch, capsys):
    status, err = cli_run(monkeypatch, capsys, *train_args(tmp_path, "--eval_rows_limit=1"))
    assert status == 2 and "the valid split's 1 row(s) all have label" in one_line(err)
    assert "raise eval_rows_limit or check the split" in one_line(err)


def test_a_label_column_not_loaded_is_named(tmp_path, monkeypatch, capsys):
    data = copy_tiny(tmp_path)
    inter = data / "tiny" / "tiny.inter"
    header, *rows = inter.read_text().splitlines()
    inter.write_text("\n".join([header + "\tlabel:float", *(r + f"\t{int(float(r.split(chr(9))[2]) >= 4)}" for r in rows)]) + "\n")
    (tmp_path / "labels.yaml").write_text("load_col: {inter: [user_id, item_id, timestamp], item: [item_id, movie_title]}\nthreshold: ~\n")
    status, err = cli_run(monkeypatch, capsys, "--model=MF", "--dataset=tiny", f"--config_files={TINY_YAML},{tmp_path / 'labels.yaml'}",
                          f"--data_path={data}", f"--checkpoint_dir={tmp_path}", "--state=WARNING")
    assert status == 2 and one_line(err).endswith(
        "load_col: the .inter file has a 'label' column but load_col.inter does not load it; add label to load_col.inter")


def test_duplicate_rows_are_counted(tmp_path, caplog):
    data = copy_tiny(tmp_path)
    inter = data / "tiny" / "tiny.inter"
    header, *rows = inter.read_text().splitlines()
    inter.write_text("\n".join([header, *rows, *rows[:7]]) + "\n")
    with caplog.at_level(logging.WARNING):
        tiny_config_data = tiny_config("MF", tmp_path, data_path=str(data))
        from recbole_collm.data import CollmDataset
        CollmDataset(tiny_config_data)
    assert "tiny: 7 duplicate row(s) (same user_id, item_id, timestamp); each counts as a row of its own; " \
           "set rm_dup_inter: first to keep one of each" in caplog.text


# --- settings -------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra,message", [
    (["--topk=[0]"], "topk: '[0]' must be a positive whole number or a list of them, e.g. [10] or [1, 5, 10]"),
    (["--seed=abc"], "seed: 'abc' must be a whole number ≥ 0"),
    (["--epochs=0"], "epochs: '0' must be a positive whole number"),
    (["--epochs=1", "--epochs=2"], "command line: --epochs given twice (2 and 1); give it once"),
])
def test_bad_training_settings_are_one_line(tmp_path, monkeypatch, capsys, extra, message):
    args = [a for a in train_args(tmp_path, *extra) if a != "--epochs=1"] + (["--epochs=1"] if "--epochs=1" in extra else [])
    status, err = cli_run(monkeypatch, capsys, *args)
    assert status == 2 and one_line(err) == f"recbole-collm: error: {message}"


def test_a_yaml_syntax_error_names_file_and_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\nlearning_rate: [0.1\n")
    status, err = cli_run(monkeypatch, capsys, "--model=MF", "--dataset=tiny", f"--config_files={TINY_YAML},{bad}")
    assert status == 2 and one_line(err).startswith(f"recbole-collm: error: {bad}, line 3: not valid YAML (")


@pytest.mark.parametrize("damage,message", [
    (lambda folder: (folder / "config.json").write_text("{not json"), "config.json' is not valid JSON ("),
    (lambda folder: [f.unlink() for f in folder.glob("tokenizer*")], "' has no usable tokenizer"),
    (lambda folder: [f.unlink() for f in folder.glob("*.safetensors")], "' holds no loadable causal LM"),
])
def test_a_broken_llm_folder_is_one_line(tiny_llm_dir, tmp_path, monkeypatch, capsys, damage, message):
    folder = tmp_path / "llm"
    shutil.copytree(tiny_llm_dir, folder)
    damage(folder)
    status, err = cli_run(monkeypatch, capsys, "--model=TALLRec", "--dataset=tiny", f"--config_files={TINY_YAML}",
                          f"--llm_path={folder}", f"--checkpoint_dir={tmp_path}", "--state=WARNING", "--train_rows_limit=8")
    assert status == 2 and one_line(err).startswith(f"recbole-collm: error: llm_path: '{folder}") and message in one_line(err)


def test_ctrl_c_is_one_line_saying_resume_continues(tmp_path, monkeypatch, capsys):
    from recbole_collm.trainer.trainer import PluginTrainerMixin

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(PluginTrainerMixin, "fit", interrupted)
    status, err = cli_run(monkeypatch, capsys, *train_args(tmp_path))
    assert status == 130
    assert err == "recbole-collm: interrupted; the same command with --resume=auto continues from the last checkpoint"


def test_results_print_as_plain_numbers_and_collm_is_compared_with_its_source(tiny_llm_dir, mf_checkpoint, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        result = run_recbole_collm(model="CoLLM", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
            "llm_path": str(tiny_llm_dir), "train_rows_limit": 16, "eval_rows_limit": 40, "epochs": 1, "stage": "cie",
            "cf_checkpoint": mf_checkpoint, "checkpoint_dir": str(tmp_path), "show_progress": False, "warmup_steps": 0,
            "llm_compute_dtype": "float32"})
    assert "np.float64" not in caplog.text
    auc, uauc = result["source_comparison"]
    # the evaluator's figures (rounded to RecBole's metric_decimal_place, 4) recomputed from the rows
    assert auc.a == pytest.approx(result["test_result"]["auc"], abs=5e-5)
    assert auc.b == pytest.approx(result["source_test_result"]["auc"], abs=5e-5)
    assert uauc.a == pytest.approx(result["test_result"]["uauc"], abs=5e-5)
    assert f"CoLLM vs its source: {auc}" in caplog.text and f"CoLLM vs its source: {uauc}" in caplog.text
    rows = result["test_rows"]
    assert auc.rows == len(rows["label"]) == 40 and auc.users == len(set(rows["user"]))
    assert np.isfinite(auc.low) and auc.low <= auc.difference <= auc.high
