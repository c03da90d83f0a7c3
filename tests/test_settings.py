"""Every setting is checked when the settings are read: a wrong value is one line naming the key,
before any data is read or any model (an LLM above all) is built."""
import pytest

from recbole_collm import cli
from recbole_collm.config import PROPERTIES_DIR, resolve_config_file
from recbole_collm.errors import InputError
from tests.conftest import ROOT, TINY_YAML, tiny_config


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    """The command line in this process, with building data or a model forbidden."""
    import recbole_collm.data.utils as data_utils
    import recbole_collm.model.llm.backbone as backbone
    import recbole_collm.model.llm_recommender  # noqa: F401  (imported first: the models keep the real load_llm)

    def forbidden(*a, **k):
        raise AssertionError("data or a model was built before the settings were checked")

    monkeypatch.setattr(data_utils, "CollmDataset", forbidden)
    monkeypatch.setattr(backbone, "load_llm", forbidden)
    files = [a for a in args if a.startswith("--config_files=")] or [f"--config_files={TINY_YAML}"]
    args = [a for a in args if not a.startswith("--config_files=")]
    monkeypatch.setattr("sys.argv", ["run_recbole_collm.py", "--dataset=tiny", *files, *args])
    status = cli.main()
    return status, capsys.readouterr().err.strip()


@pytest.mark.parametrize("args,message", [
    (["--model=MF", "--epochs=abc"], "epochs: 'abc' must be a positive whole number"),
    (["--model=MF", "--train_batch_size=0"], "train_batch_size: '0' must be a positive whole number"),
    (["--model=MF", "--learning_rate=-1"], "learning_rate: '-1' must be a positive number"),
    (["--model=NoSuchModel"], "model 'NoSuchModel': no such model in recbole_collm.model"),
    (["--model=CoLLM", "--cf_checkpoint=missing.pth"], "cf_checkpoint: 'missing.pth' not found; expected a saved"),
    (["--model=CoLLM", "--stage=two"], "stage: 'two' is not one of lora, cie, one_step, all (the CoLLM stages)"),
    (["--model=MF", "--learner=adamm"], "learner: 'adamm' is not one of adam, adamw, sgd"),
    (["--model=MF", "--config_files=nope.yaml"],
     "config_files: 'nope.yaml' not found (a yaml path, or a named setting: gpu.yaml, split/global_time.yaml)"),
])
def test_bad_setting_is_one_line_before_anything_is_built(monkeypatch, capsys, args, message):
    status, err = run_cli(monkeypatch, capsys, *args)
    assert status == 2
    assert err.startswith(f"run_recbole_collm: error: {message}") and "\n" not in err


def test_values_in_range_pass_and_numbers_given_as_text_are_read():
    config = tiny_config(epochs="3", learning_rate=0.5, train_rows_limit=None)
    assert config["epochs"] == 3  # RecBole reads "3" as a number; the check refuses what is not one
    with pytest.raises(InputError, match=r"^epochs: '2.5' must be a positive whole number$"):
        tiny_config(epochs=2.5)
    with pytest.raises(InputError, match=r"^enable_amp: 'yes' must be True or False$"):
        tiny_config(enable_amp="yes")


def test_named_settings_resolve_in_the_checkouts_properties_folder(tmp_path, monkeypatch):
    assert PROPERTIES_DIR == ROOT / "properties"  # a checkout reads its top-level folder (a wheel: tests/test_wheel.py)
    monkeypatch.chdir(tmp_path)  # from any folder
    assert resolve_config_file("gpu.yaml") == str(ROOT / "properties" / "gpu.yaml")
    assert resolve_config_file("split/global_time.yaml") == str(ROOT / "properties" / "split" / "global_time.yaml")
    (tmp_path / "gpu.yaml").write_text("epochs: 1\n")
    assert resolve_config_file("gpu.yaml") == "gpu.yaml"  # a file of the user's own comes first
    with pytest.raises(FileNotFoundError, match="config_files: '../cli.py' not found"):
        resolve_config_file("../cli.py")  # only files under the properties folder are named settings
