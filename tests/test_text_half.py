"""The text half trains for many epochs: LoRA on the top layers with the frozen layers below run
once per prompt (exact scores and gradients), a learning rate with a floor, each epoch's train rows
reported beside the label entropy, the CIE stage entering blank, validation choosing which stage's
weights a run keeps, and ItemRate (the memorised-titles reference)."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from recbole_collm.errors import InputError
from recbole_collm.files import read_checkpoint
from recbole_collm.model.llm_recommender.collm import CoLLM
from recbole_collm.model.llm_recommender.tallrec import TALLRec
from recbole_collm.trainer import LLMTrainer
from tests.conftest import tiny_config
from tests.conftest import build_llm_run


def _perturb_lora(model, seed: int = 1) -> None:
    """LoRA's B starts at zero (no effect); random B and A so the adapter changes the scores."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def test_lora_on_the_top_layers_only(tiny_llm_dir, tmp_path):
    _, model, _, _ = build_llm_run(TALLRec, tiny_llm_dir, tmp_path, lora_layers=1)
    lora = [n for n, p in model.named_parameters() if p.requires_grad]
    assert lora and all(".layers.1." in n for n in lora)  # the tiny LLaMA has layers 0 and 1
    assert model.lower.cut == 1


def test_lower_layer_cache_gives_the_whole_decoders_scores_and_gradients(tiny_llm_dir, tmp_path):
    _, model, train, _ = build_llm_run(TALLRec, tiny_llm_dir, tmp_path, lora_layers=1)
    _perturb_lora(model)
    rows = train._dataset.inter_feat[torch.arange(12)]
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads():
        model.zero_grad()
        loss = model.calculate_loss(rows)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in params]

    cached_loss, cached_grads = loss_and_grads()
    assert model.lower.store.misses == 12 and model.lower.store.hits == 0
    again_loss, _ = loss_and_grads()  # the second pass reads every row's lower-layer state
    assert model.lower.store.hits == 12 and model.lower.store.misses == 12
    lower, model.lower = model.lower, None  # the reference: the whole decoder (shared prefixes)
    whole_loss, whole_grads = loss_and_grads()
    model.lower = lower
    torch.testing.assert_close(cached_loss, whole_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again_loss, whole_loss, rtol=1e-5, atol=1e-6)
    for cached, whole in zip(cached_grads, whole_grads):
        torch.testing.assert_close(cached, whole, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in whole_grads)


def test_an_optimizer_step_on_lora_keeps_the_lower_states(tiny_llm_dir, tmp_path):
    _, model, train, _ = build_llm_run(TALLRec, tiny_llm_dir, tmp_path, lora_layers=1)
    rows = train._dataset.inter_feat[torch.arange(8)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.calculate_loss(rows).backward()
    optimizer.step()
    with torch.no_grad():
        after = model.logits(rows)
        model.lower.store.clear()
        recomputed = model.logits(rows)
    assert model.lower.store.hits == 8  # the step did not empty the store
    torch.testing.assert_close(after, recomputed)


def test_lora_layers_covering_the_llm_is_lora_on_every_layer(tiny_llm_dir, tmp_path):
    _, model, _, _ = build_llm_run(TALLRec, tiny_llm_dir, tmp_path, lora_layers=3)
    lora = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(".layers.0." in n for n in lora) and any(".layers.1." in n for n in lora)
    assert model.lower is None


@pytest.mark.parametrize("value", [1.5, -0.1])
def test_min_lr_ratio_outside_0_1_is_one_clear_error(value):
    with pytest.raises(InputError, match="min_lr_ratio"):
        tiny_config("TALLRec", min_lr_ratio=value)


def test_learning_rate_ends_at_its_floor_and_each_epoch_reports_its_train_rows(tiny_llm_dir, tmp_path):
    config, model, train, valid = build_llm_run(TALLRec, tiny_llm_dir, tmp_path, epochs=3, eval_step=1, learning_rate=0.01,
                                        min_lr_ratio=0.25, lora_layers=1, stopping_step=10)
    trainer = LLMTrainer(config, model)
    trainer.fit(train, valid, saved=False)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0025)  # 48 rows / 8 = 6 batches, 3 steps × 3 epochs
    labels = train._dataset.inter_feat["label"].float()
    p = labels.mean().item()
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert [h["epoch"] for h in trainer.history] == [0, 1, 2]
    for h in trainer.history:
        assert h["stage"] == "lora" and h["rows"] == 48
        assert h["label_entropy"] == pytest.approx(entropy)
        assert set(h["valid"]) >= {"auc", "uauc"}


def test_train_rows_auc_is_the_auc_of_the_scores_each_batch_was_trained_on(tiny_llm_dir, tmp_path):
    # one batch of all 48 rows: the epoch's scores are the untrained model's
    config, model, train, valid = build_llm_run(TALLRec, tiny_llm_dir, tmp_path, train_batch_size=48, gradient_accumulation_steps=1)
    _perturb_lora(model)
    rows = train._dataset.inter_feat
    with torch.no_grad():
        scores = model.logits(rows).numpy()
    trainer = LLMTrainer(config, model)
    trainer.fit(train, None, saved=False)
    (record,) = trainer.history
    assert record["train_auc"] == pytest.approx(roc_auc_score(rows["label"].numpy(), scores), abs=1e-9)


def test_validation_keeps_the_better_stage(tiny_llm_dir, tmp_path):
    config, model, train, valid = build_llm_run(CoLLM, tiny_llm_dir, tmp_path, stage="all", eval_step=1)
    trainer = LLMTrainer(config, model)
    trainer.fit(train, valid)
    lora_file = trainer.stage_file(0)
    final = read_checkpoint(trainer.saved_model_file)
    scores = {stage: best for stage, (best, _) in trainer.stage_best.items()}
    better = max(scores, key=lambda s: (scores[s], s == "cie"))  # a tie keeps the last stage
    assert final["other_parameter"]["stage"] == better
    # the other branch, whatever this run's numbers: the LoRA stage validated better
    trainer.stage_best["lora"] = (scores["cie"] + 0.1, trainer.stage_best["lora"][1])
    trainer.restore_best_stage()
    final, lora = read_checkpoint(trainer.saved_model_file), read_checkpoint(lora_file)
    assert final["other_parameter"]["stage"] == "lora" and model.stage == "lora"
    assert trainer.best_valid_score == scores["cie"] + 0.1
    for key, value in lora["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][key], value)


def test_item_rate_is_each_items_smoothed_positive_rate(tmp_path):
    from recbole_collm.data import CollmDataset
    from recbole_collm.data.utils import data_preparation
    from recbole_collm.model.general_recommender.itemrate import ItemRate

    config = tiny_config("ItemRate", tmp_path, item_rate_prior=4)
    train, _, test = data_preparation(config, CollmDataset(config))
    model = ItemRate(config, train._dataset)
    rows = train._dataset.inter_feat
    items, labels = rows["item_id"].numpy(), rows["label"].numpy().astype(float)
    base = labels.mean()
    batch = test._dataset.inter_feat[torch.arange(10)]
    expected = []
    for item in batch["item_id"].tolist():
        seen = labels[items == item]
        expected.append((seen.sum() + 4 * base) / (len(seen) + 4))
    np.testing.assert_allclose(model.predict(batch).numpy(), expected, rtol=1e-5)


def test_eval_rows_sample_users_takes_users_with_both_labels_three_rows_each(tmp_path):
    from recbole_collm.data import CollmDataset

    config = tiny_config("MF", tmp_path, eval_rows_limit=30, eval_rows_sample="users")
    full = CollmDataset(tiny_config("MF", tmp_path)).build()
    _, valid, test = CollmDataset(config).build()
    for sampled, whole in ((valid, full[1]), (test, full[2])):
        users, labels = sampled.inter_feat["user_id"].numpy(), sampled.inter_feat["label"].numpy()
        assert len(users) == 30
        whole_users = whole.inter_feat["user_id"].numpy()
        counts = {u: int((users == u).sum()) for u in set(users.tolist())}
        short = [u for u in counts if counts[u] != min(3, int((whole_users == u).sum()))]
        assert len(short) <= 1  # the last user drawn may be cut at the limit
        assert len(counts) >= 10
        for u in counts:
            if u not in short:
                assert set(labels[users == u].tolist()) == {0, 1}
        # every sampled row is a row of the split
        rows = set(zip(whole.inter_feat["user_id"].tolist(), whole.inter_feat["item_id"].tolist()))
        assert set(zip(users.tolist(), sampled.inter_feat["item_id"].tolist())) <= rows


def test_a_collm_run_reports_its_lora_stage_on_the_same_test_rows(tiny_llm_dir, tmp_path):
    from recbole_collm.quick_start import run_recbole_collm
    from tests.conftest import TINY_YAML

    settings = {"llm_path": str(tiny_llm_dir), "train_rows_limit": 48, "eval_rows_limit": 24, "show_progress": False,
                "llm_compute_dtype": "float32", "cf_checkpoint": None, "stage": "all", "epochs": 1, "state": "WARNING",
                "checkpoint_dir": str(tmp_path / "saved"), "seed": 2023, "cie_learning_rate": 0.01, "cie_epochs": 3, "valid_metric": "logloss"}
    result = run_recbole_collm(model="CoLLM", dataset="tiny", config_file_list=[TINY_YAML], config_dict=settings)
    # the blank CIE lowers the log loss in its stage (it learns the base rate): the CIE stage is kept
    assert read_checkpoint(result["model_file"])["other_parameter"]["stage"] == "cie"
    lora = result["stage_test_results"]["lora"]
    auc = next(c for c in result["stage_comparisons"]["lora"] if c.metric == "auc")
    assert auc.b == pytest.approx(lora["auc"], abs=5e-5) and auc.a == pytest.approx(result["test_result"]["auc"], abs=5e-5)
    assert auc.b != auc.a
    assert [h["stage"] for h in result["history"]] == ["lora", "cie", "cie", "cie"]
