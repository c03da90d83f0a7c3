"""Bad input: one clear line naming the file/field/key and what is expected."""
import subprocess
import sys

import pandas as pd
import pytest
import torch

from recbole_collm import Config, run_recbole_collm
from recbole_collm.data import CollmDataset
from recbole_collm.errors import InputError
from recbole_collm.restore import collaborative_source
from tests.conftest import ROOT, TINY_DATA_ARG, TINY_YAML, tiny_config

RAW = pd.read_csv(ROOT / "tests/data/tiny/tiny.inter", sep="\t")
ITEM = (ROOT / "tests/data/tiny/tiny.item").read_text()


def make_dataset(tmp_path, name="d", inter=None, item=ITEM):
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{name}.inter").write_text(RAW.head(200).to_csv(sep="\t", index=False) if inter is None else inter)
    if item is not None:
        (folder / f"{name}.item").write_text(item)
    return Config(model="MF", dataset=name, config_file_list=[TINY_YAML],
                  config_dict={"data_path": str(tmp_path), "state": "WARNING"})


def test_missing_inter_file(tmp_path):
    config = make_dataset(tmp_path)
    (tmp_path / "d" / "d.inter").unlink()
    with pytest.raises(InputError, match=r"d/d.inter: file not found"):
        CollmDataset(config)


def test_empty_inter_file(tmp_path):
    config = make_dataset(tmp_path, inter="user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
    with pytest.raises(InputError, match=r"d/d.inter: empty; expected a 'name:type' header line and at least one row"):
        CollmDataset(config)


@pytest.mark.parametrize("item,message", [
    ("item_id:token\tgenre:token\n1\tx\n", r"d/d.item: no 'movie_title' column \(load_col asks for it\)"),
    ("item_id:token\tmovie_title:token_seq\n1\tHeat\t(1995)\n2\tBig\n",
     r"d/d.item, line 2: 3 tab-separated fields, the header has 2"),  # a tab inside a title
])
def test_bad_item_file(tmp_path, item, message):
    config = make_dataset(tmp_path, item=item)
    with pytest.raises(InputError, match=message):
        CollmDataset(config)


def test_unicode_quotes_and_empty_titles_load(tmp_path):
    lines = ["item_id:token\tmovie_title:token_seq", "1\tAmélie — 東京 (2001)", "2\tSay 'Hi' \"now\"", "3\t"]
    lines += [f"{i}\tT{i}" for i in range(4, 31)]
    config = make_dataset(tmp_path, item="\n".join(lines) + "\n")
    dataset = CollmDataset(config)
    titles = {dataset.id2token("item_id", i): t for i, t in enumerate(dataset.item_titles) if i}
    assert titles["1"] == "Amélie — 東京 (2001)"
    assert titles["2"] == "Say 'Hi' \"now\""
    assert titles["3"] == ""


def test_unknown_key_suggests_the_closest(tmp_path):
    with pytest.raises(InputError, match=r"config dict: unknown key 'learning_rat' .*did you mean 'learning_rate'"):
        Config(model="MF", dataset="tiny", config_file_list=[TINY_YAML], config_dict={"learning_rat": 0.1})
    Config(model="MF", dataset="tiny", config_file_list=[TINY_YAML], config_dict={"learning_rat": 0.1, "strict_config": False})


def test_checkpoint_of_another_model_type(tmp_path):
    result = run_recbole_collm(model="MF", dataset="tiny", config_file_list=[TINY_YAML],
                               config_dict={"epochs": 1, "checkpoint_dir": str(tmp_path), "state": "WARNING"})
    checkpoint = torch.load(result["model_file"], weights_only=False)
    checkpoint["config"]["model"] = "NeuMF"
    torch.save(checkpoint, tmp_path / "neumf.pth")
    dataset = CollmDataset(checkpoint["config"])
    config = tiny_config("CoLLM", tmp_path, cf_checkpoint=str(tmp_path / "neumf.pth"))
    with pytest.raises(InputError, match=r"^cf_checkpoint: .*neumf.pth holds NeuMF weights; CoLLM reads one of MF, LightGCNCTR, SASRecCTR, DINCTR, BPR, LightGCN, SASRec, DIN$"):
        collaborative_source(config, dataset)


def test_cli_prints_one_line_and_exits_2(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_collm.py"), "--model=MF", "--dataset=tiny",
         f"--config_files={TINY_YAML}", TINY_DATA_ARG, "--embeding_size=8", f"--checkpoint_dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "run_recbole_collm: error: command line: unknown key 'embeding_size' for model MF; "
        "did you mean 'embedding_size'? (set strict_config: False to allow it)"
    )
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.glob("*.pth"))  # nothing written
