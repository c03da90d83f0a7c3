"""The LLM's compute dtype (``llm_compute_dtype``): bf16 autocast against the float32 path on the
tiny LLaMA — scores, gradients, a short training run — the CPU detection, the shared-prefix engine
and the prefix store in bf16, and the one setting reaching every LLM model and the score command.

Tolerances: the tiny model's scores (logit(Yes) − logit(No)) are of order 0.1–1; bf16 keeps 8
mantissa bits (relative error ~4e-3 per rounding). Measured here (bf16 frozen weights, bf16
autocast): bf16 against float32 at most 2.3e-3 (plain and shared-prefix paths), gradient cosines
≥ 0.997, a 2-epoch run's validation AUC 0.6019 against 0.5926. Stated bounds: 0.005 for scores,
0.99 for cosines, 0.03 for the AUC.
"""
import logging

import pytest
import torch
import torch.nn.functional as F

from recbole_collm.data import CollmDataset
from recbole_collm.data.utils import data_preparation
from recbole_collm.errors import InputError
from recbole_collm.model.llm import precision
from recbole_collm.model.llm.precision import Precision, resolve_compute_dtype
from recbole_collm.model.llm_recommender.collm import CoLLM
from recbole_collm.model.llm_recommender.tallrec import TALLRec
from recbole_collm.restore import build_model
from recbole_collm.trainer import LLMTrainer
from tests.conftest import llm_config, tiny_config
from tests.conftest import mixed_batch

SCORE_TOL = 0.005


@pytest.fixture
def forced_cpu(monkeypatch):
    """Pretend the CPU has (or lacks) native bf16, whatever this machine has."""

    def force(flags: set[str]) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: set(flags))
        precision.cpu_has_native_bf16.cache_clear()

    yield force
    precision.cpu_has_native_bf16.cache_clear()


def build(model_cls, tiny_llm_dir, mf_checkpoint, tmp_path, dtype, **overrides):
    settings = dict(cf_checkpoint=mf_checkpoint, llm_compute_dtype=dtype, prefix_batch_size=2, llm_batch_size=3)
    settings.update(overrides)
    config = llm_config(model_cls.__name__, tiny_llm_dir, tmp_path, **settings)
    train, valid, test = data_preparation(config, CollmDataset(config))
    torch.manual_seed(0)
    model = build_model(config, train._dataset)
    with torch.no_grad():  # LoRA B starts at zero: make the adapter matter for the checks
        for name, param in model.llm.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return config, model, train, valid


def pair(tiny_llm_dir, mf_checkpoint, tmp_path, **overrides):
    """The same model (same initial weights) in float32 and in bf16."""
    built = {d: build(CoLLM, tiny_llm_dir, mf_checkpoint, tmp_path, d, **overrides) for d in ("float32", "bfloat16")}
    built["bfloat16"][1].load_state_dict(built["float32"][1].state_dict())
    return built


# --- detection --------------------------------------------------------------------------------
@pytest.mark.parametrize("flags,expected", [
    ({"avx512f", "avx512_bf16"}, torch.bfloat16), ({"amx_bf16"}, torch.bfloat16), ({"fp", "asimd", "bf16"}, torch.bfloat16),
    ({"avx2", "avx512f"}, torch.float32), (set(), torch.float32),
])
def test_auto_is_bf16_only_where_the_cpu_computes_it_natively(forced_cpu, flags, expected, caplog):
    forced_cpu(flags)
    with caplog.at_level(logging.INFO):
        found = Precision("auto", torch.device("cpu"), logging.getLogger("t"))
    assert found.dtype == expected
    lines = [r.getMessage() for r in caplog.records]
    if expected == torch.float32:  # one line saying why
        assert lines == ["llm_compute_dtype: auto -> float32 (this CPU has no native bf16 (avx512_bf16/amx_bf16/bf16); "
                         "emulated bf16 would be slower); frozen LLM weights: float32"]
    else:
        assert lines == ["llm_compute_dtype: auto -> bfloat16 (the CPU computes bf16 natively); "
                         "frozen LLM weights: linear layers in bfloat16, embeddings and norms in float32"]


def test_explicit_settings_win_and_float16_needs_a_gpu(forced_cpu):
    forced_cpu(set())
    assert resolve_compute_dtype("bfloat16", torch.device("cpu"))[0] == torch.bfloat16
    assert resolve_compute_dtype(None, torch.device("cpu"))[0] == torch.float32  # an old checkpoint: auto
    forced_cpu({"avx512_bf16"})
    assert resolve_compute_dtype("float32", torch.device("cpu"))[0] == torch.float32
    with pytest.raises(InputError, match=r"^llm_compute_dtype: 'float16' needs a CUDA GPU \(this run is on cpu\)"):
        resolve_compute_dtype("float16", torch.device("cpu"))


def test_a_model_without_native_bf16_runs_float32(forced_cpu, tiny_llm_dir, mf_checkpoint, tmp_path):
    forced_cpu({"avx2"})
    _, model, train, _ = build(TALLRec, tiny_llm_dir, mf_checkpoint, tmp_path, "auto")
    seen = []
    model.base_llm.get_decoder().layers[0].self_attn.q_proj.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    with torch.no_grad():
        model.predict(train._dataset.inter_feat[torch.arange(4)])
    assert model.precision.dtype == torch.float32 and set(seen) == {torch.float32}


def test_settings_check_the_dtype_and_refuse_enable_amp_for_llm_models(tiny_llm_dir, tmp_path):
    with pytest.raises(InputError, match=r"^llm_compute_dtype: 'half' is not one of auto, float32, bfloat16, float16$"):
        llm_config("CoLLM", tiny_llm_dir, tmp_path, llm_compute_dtype="half")
    with pytest.raises(InputError, match=r"^enable_amp: the LLM models set their precision with llm_compute_dtype"):
        llm_config("CoLLM", tiny_llm_dir, tmp_path, enable_amp=True)
    assert tiny_config("MF", enable_amp=True)["enable_amp"] is True  # RecBole's own models keep it


# --- bf16 against float32 -----------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["lora", "cie"])
def test_bf16_scores_match_float32_on_both_paths(tiny_llm_dir, mf_checkpoint, tmp_path, stage):
    built = pair(tiny_llm_dir, mf_checkpoint, tmp_path, stage=stage, prefix_store_mb=0)
    batch = mixed_batch(built["float32"][2]._dataset)
    scores = {}
    for dtype, (_, model, _, _) in built.items():
        model.eval()
        for share in (False, True):
            model.share_prefixes = share
            with torch.no_grad():
                scores[dtype, share] = model.logits(batch)
            assert scores[dtype, share].dtype == torch.float32  # the score itself is float32
    reference = scores["float32", False]
    assert torch.allclose(scores["float32", True], reference, atol=1e-5)  # the engine is exact in float32
    for share in (False, True):
        difference = (scores["bfloat16", share] - reference).abs().max().item()
        assert 0 < difference < SCORE_TOL  # bf16 did run (not a float32 copy), and stayed close
    # the shared-prefix path equals the plain one in bf16 as in float32 (both within bf16 rounding)
    assert (scores["bfloat16", True] - scores["bfloat16", False]).abs().max().item() < SCORE_TOL


@pytest.mark.parametrize("stage", ["lora", "cie", "one_step"])
def test_bf16_gradients_point_as_float32_ones_and_stay_float32(tiny_llm_dir, mf_checkpoint, tmp_path, stage):
    built = pair(tiny_llm_dir, mf_checkpoint, tmp_path, stage=stage, prefix_store_mb=0)
    batch = mixed_batch(built["float32"][2]._dataset)
    batch["label"] = torch.tensor([1.0, 0, 1, 0, 1, 0, 1, 1, 0])
    grads = {}
    for dtype, (_, model, _, _) in built.items():
        model.train()
        model.zero_grad()
        loss = model.calculate_loss(batch)
        assert loss.dtype == torch.float32
        loss.backward()
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        assert named and all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for _, p in named)
        grads[dtype] = {n: p.grad.flatten().clone() for n, p in named}
    assert grads["float32"].keys() == grads["bfloat16"].keys()
    for name, reference in grads["float32"].items():
        if reference.norm() > 0:
            cosine = F.cosine_similarity(reference, grads["bfloat16"][name], dim=0).item()
            assert cosine >= 0.99, (name, cosine)


def test_bf16_training_reaches_float32_validation_auc_and_keeps_the_optimizer_float32(tiny_llm_dir, mf_checkpoint, tmp_path):
    aucs = {}
    for dtype in ("float32", "bfloat16"):
        config, model, train, valid = build(CoLLM, tiny_llm_dir, mf_checkpoint, tmp_path, dtype, epochs=2, eval_step=1,
                                            learning_rate=0.01, cie_learning_rate=0.01)
        trainer = LLMTrainer(config, model)
        trainer.fit(train, valid, saved=False)
        state = trainer.optimizer.state_dict()["state"]
        assert state and all(v.dtype == torch.float32 for s in state.values() for k, v in s.items() if k != "step")
        aucs[dtype] = trainer.evaluate(valid, load_best_model=False)["auc"]
    # 24 validation rows: one pair of rows swapped moves the AUC by ~1/140; the stated margin is 0.03
    assert abs(aucs["bfloat16"] - aucs["float32"]) <= 0.03, aucs


# --- the prefix store and the engine in bf16 ------------------------------------------------------
def test_prefix_store_holds_bf16_and_reads_as_the_plain_bf16_path(tiny_llm_dir, mf_checkpoint, tmp_path):
    _, model, train, _ = build(CoLLM, tiny_llm_dir, mf_checkpoint, tmp_path, "bfloat16", stage="cie", prefix_store_mb=64)
    batch = mixed_batch(train._dataset)
    model.eval()
    with torch.no_grad():
        first = model.logits(batch)  # fills the store
        second = model.logits(batch)  # reads it
        store = model.prefix_store
        model.prefix_store, model.share_prefixes = None, False
        plain = model.logits(batch)
    assert store.dtype == torch.bfloat16 and store.hits > 0
    assert all(k.dtype == torch.bfloat16 and v.dtype == torch.bfloat16 for entry in store.entries.values() for k, v in entry)
    assert torch.equal(first, second)
    assert (second - plain).abs().max().item() < SCORE_TOL


def test_float32_compute_keeps_the_half_precision_store_default(tiny_llm_dir, mf_checkpoint, tmp_path):
    _, model, _, _ = build(CoLLM, tiny_llm_dir, mf_checkpoint, tmp_path, "float32", stage="cie", prefix_store_mb=64)
    assert model.prefix_store.dtype == torch.float16
    _, model, _, _ = build(CoLLM, tiny_llm_dir, mf_checkpoint, tmp_path, "bfloat16", stage="cie", prefix_store_mb=64,
                           prefix_store_dtype="float32")
    assert model.prefix_store.dtype == torch.float32  # an explicit choice wins


# --- every path honours the one setting -----------------------------------------------------------
def test_training_evaluation_and_scoring_run_the_llm_in_the_compute_dtype(tiny_llm_dir, mf_checkpoint, tmp_path):
    from recbole_collm.restore import restore

    for setting, expected in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        config, model, train, valid = build(TALLRec, tiny_llm_dir, mf_checkpoint, tmp_path, setting)
        seen = []
        model.base_llm.get_decoder().layers[0].self_attn.q_proj.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
        trainer = LLMTrainer(config, model)
        trainer.fit(train, None, saved=True)
        assert seen and set(seen) == {expected}
        seen.clear()
        trainer.evaluate(valid, load_best_model=False)
        assert seen and set(seen) == {expected}
        # trainable parts float32; the frozen linear layers in the compute dtype, the residual
        # stream's weights (embeddings, norms) float32 (llm_dtype: auto)
        assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
        decoder = model.base_llm.get_decoder()
        assert decoder.layers[0].mlp.down_proj.weight.dtype == expected
        assert decoder.layers[0].self_attn.q_proj.base_layer.weight.dtype == expected
        assert decoder.embed_tokens.weight.dtype == decoder.norm.weight.dtype == torch.float32
        # a saved run scores in its own compute dtype, or in the one the score command asks for
        for asked, got in ((None, expected), ("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            restored = restore(trainer.saved_model_file, settings={"llm_compute_dtype": asked} if asked else None)
            assert restored.model.precision.dtype == got
    with pytest.raises(InputError, match=r"^llm_compute_dtype: 'fp8' is not one of"):
        restore(trainer.saved_model_file, settings={"llm_compute_dtype": "fp8"})


def test_frozen_weights_follow_the_compute_dtype_unless_llm_dtype_says(tiny_llm_dir, mf_checkpoint, tmp_path):
    _, model, _, _ = build(CoLLM, tiny_llm_dir, mf_checkpoint, tmp_path, "bfloat16", llm_dtype="bfloat16", stage="cie")
    decoder = model.base_llm.get_decoder()
    assert decoder.embed_tokens.weight.dtype == decoder.norm.weight.dtype == torch.bfloat16  # the whole model, as asked
    _, model, train, _ = build(CoLLM, tiny_llm_dir, mf_checkpoint, tmp_path, "bfloat16", llm_dtype="float32", stage="cie")
    assert model.precision.weights_dtype == torch.float32 and model.precision.linear_dtype is None
    assert model.base_llm.get_decoder().layers[0].self_attn.q_proj.weight.dtype == torch.float32
    seen = []
    model.base_llm.get_decoder().layers[0].self_attn.q_proj.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    with torch.no_grad():
        model.predict(mixed_batch(train._dataset))
    assert set(seen) == {torch.bfloat16}  # autocast over float32 weights


# --- the attention the plugin registers -----------------------------------------------------------
def test_cpu_attention_equals_transformers_sdpa_and_runs_float32_under_autograd():
    from types import SimpleNamespace

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from recbole_collm.model.llm.backbone import _cpu_attention

    torch.manual_seed(0)
    module = SimpleNamespace(num_key_value_groups=3, is_causal=True, training=False)
    q, k, v = torch.randn(2, 6, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    mask = torch.zeros(2, 1, 5, 7).masked_fill(torch.rand(2, 1, 5, 7) < 0.3, torch.finfo(torch.float32).min)
    mask[..., 0] = 0  # every query sees a key
    for m in (mask, None):  # a 4D float mask (the engine's), or none (causal)
        ours, _ = _cpu_attention(module, q, k, v, m, scaling=0.35)
        theirs, _ = sdpa_attention_forward(module, q, k, v, m, scaling=0.35)
        assert torch.allclose(ours, theirs, atol=1e-6)
    seen = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(query, *args, **kwargs):
        seen.append((query.dtype, torch.is_autocast_enabled("cpu")))
        return real(query, *args, **kwargs)

    qb, kb, vb = (t.to(torch.bfloat16).requires_grad_() for t in (q, k, v))
    qf = q.clone().requires_grad_()  # a float32 query (rotary embeddings over a float32 residual stream)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
        with torch.autocast("cpu", torch.bfloat16):
            out, _ = _cpu_attention(module, qb, kb, vb, mask.to(torch.bfloat16), scaling=0.35)
            _cpu_attention(module, qf, kb, vb, mask.to(torch.bfloat16), scaling=0.35)
            with torch.no_grad():
                _cpu_attention(module, qb, kb, vb, mask.to(torch.bfloat16), scaling=0.35)
    assert out.dtype == torch.bfloat16
    # a bf16 query under autograd: float32 with autocast off; a float32 query stays under autocast
    # (see _cpu_attention); scoring: bf16 autocast
    assert seen == [(torch.float32, False), (torch.float32, True), (torch.bfloat16, True)]
    out.float().sum().backward()
    reference = q.clone().requires_grad_()
    sdpa_attention_forward(module, reference, k, v, mask, scaling=0.35)[0].sum().backward()
    assert F.cosine_similarity(qb.grad.float().flatten(), reference.grad.flatten(), dim=0) > 0.999
