from __future__ import annotations

from pathlib import Path

import pytest

import recbole_collm  # noqa: F401  (applies the shims before anything else imports RecBole)

ROOT = Path(__file__).resolve().parent.parent
TINY_YAML = str(ROOT / "tests" / "data" / "tiny.yaml")
SHARED_ML1M = ROOT.parent / "shared" / "data" / "ml-1m-collm"


def tiny_config(model: str = "MF", tmp_path: Path | None = None, **overrides):
    """A real RecBole Config for the tiny test dataset."""
    from recbole_collm import Config

    config_dict = {"epochs": 1, "show_progress": False, "state": "WARNING", "seed": 2023}
    if tmp_path is not None:
        config_dict["checkpoint_dir"] = str(tmp_path / "saved")
    config_dict.update(overrides)
    return Config(model=model, dataset="tiny", config_file_list=[TINY_YAML], config_dict=config_dict)


@pytest.fixture(autouse=True)
def _no_argv(monkeypatch):
    # RecBole's Config parses sys.argv; pytest's own arguments must not leak into it
    monkeypatch.setattr("sys.argv", ["pytest"])


@pytest.fixture
def shared_ml1m() -> Path:
    if not SHARED_ML1M.is_dir():
        pytest.skip(f"the CoLLM ML-1M split is not at {SHARED_ML1M} (see README: Data)")
    return SHARED_ML1M
