"""``recbole-collm tune``: RecBole's HyperTuning (hyperopt) over the plugin's runs, judged on
validation rows only, its results written as RecBole writes them."""
import re
import sys

import pytest

from recbole_collm import cli, quick_start
from tests.conftest import TINY_DATA_ARG, TINY_YAML


class Untouchable:
    """A test loader that fails if anything reads it: tuning never looks at test rows."""

    def __iter__(self):
        raise AssertionError("the test split was read during tuning")

    def __len__(self):
        raise AssertionError("the test split was read during tuning")


@pytest.fixture
def no_test_rows(monkeypatch):
    real = quick_start.data_preparation

    def preparation(config, data):
        train, valid, _ = real(config, data)
        return train, valid, Untouchable()

    monkeypatch.setattr(quick_start, "data_preparation", preparation)


def valid_aucs(text: str) -> dict[str, float]:
    """RecBole's result file: a params line, 'Valid result:' and its metrics, per trial."""
    blocks = re.findall(r"^(learning_rate:[^\n]+)\nValid result:\n(.*?)\nTest result:", text, flags=re.M | re.S)
    return {params: float(re.search(r"auc : ([0-9.]+)", metrics).group(1)) for params, metrics in blocks}


def test_tune_searches_the_grid_on_validation_and_writes_recboles_result_file(tmp_path, monkeypatch, capsys, no_test_rows):
    params = tmp_path / "mf.hyper"
    params.write_text("learning_rate choice [0.001,0.05]\n")
    out = tmp_path / "mf.result"
    fixed = ["--epochs=3", "--state=ERROR", f"--checkpoint_dir={tmp_path / 'saved'}", TINY_DATA_ARG]
    monkeypatch.setattr(sys, "argv", ["recbole-collm", "tune", "--model=MF", "--dataset=tiny", f"--config_files={TINY_YAML}",
                                      f"--params_file={params}", f"--output_file={out}", *fixed])
    assert cli.main() == 0
    found = valid_aucs(out.read_text())
    assert set(found) == {"learning_rate:0.001", "learning_rate:0.05"}
    # each trial is the plugin's run with that setting: the same validation AUC as a direct call
    monkeypatch.setattr(sys, "argv", ["pytest", *fixed])
    for lr in (0.001, 0.05):
        direct = quick_start.objective_function({"learning_rate": lr}, [TINY_YAML], model="MF", dataset="tiny")
        assert direct["test_result"] == {}
        assert found[f"learning_rate:{lr}"] == pytest.approx(direct["best_valid_result"]["auc"], abs=1e-4)
    best = max(found, key=found.get)
    printed = capsys.readouterr().out
    assert f"best params: {{'learning_rate': {best.split(':')[1]}}}" in printed
    assert found["learning_rate:0.001"] != found["learning_rate:0.05"]  # the setting reached the runs


def test_tune_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["recbole-collm", "tune", "--model=MF", "--dataset=tiny", f"--params_file={tmp_path / 'none.hyper'}"])
    assert cli.main() == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"recbole-collm: error: --params_file: '{tmp_path / 'none.hyper'}' not found"]
    params = tmp_path / "p.hyper"
    params.write_text("learning_rate choice [0.001]\n")
    monkeypatch.setattr(sys, "argv", ["recbole-collm", "tune", "--model=MF", "--dataset=tiny", f"--params_file={params}", "--max_evals=0"])
    assert cli.main() == 2
    assert capsys.readouterr().err.strip().splitlines() == ["recbole-collm: error: --max_evals: 0 must be a whole number ≥ 1"]
