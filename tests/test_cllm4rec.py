"""CLLM4Rec on a tiny random LLaMA with SmolLM2's tokenizer: losses, frozen parts, ranking."""
import numpy as np
import pytest
import torch

from recbole_collm import load_data_and_model
from recbole_collm.errors import InputError
from recbole_collm.files import read_checkpoint
from recbole_collm.model.llm_recommender.cllm4rec import CLLM4Rec
from recbole_collm.quick_start import prepare
from tests.conftest import build_ranking_run, ranking_llm_config, train_steps
from tests.ranks import hit, ndcg, target_ranks


def build(tiny_llm_dir, tmp_path, **overrides):
    return build_ranking_run("CLLM4Rec", tiny_llm_dir, tmp_path, "full", **overrides)


def steps(model, batch, n=25, lr=0.05):
    return train_steps(model, batch, n, lr)


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_each_stage_loss_goes_down_and_only_its_rows_train(tiny_llm_dir, tmp_path, stage):
    _, model, train, _ = build(tiny_llm_dir, tmp_path, stage=stage)
    batch = next(iter(train))
    assert (batch["label"] > 0.5).any() and (batch["label"] < 0.5).any()
    llm = {k: v.clone() for k, v in model.llm.state_dict().items()}
    content = model.content_tokens.item.weight.detach().clone()
    collaborative = model.tokens.item.weight.detach().clone()
    losses = steps(model, batch)
    assert losses[-1] < 0.8 * losses[0]
    assert all(torch.equal(v, model.llm.state_dict()[k]) for k, v in llm.items())  # the LLM stays frozen
    assert not torch.equal(model.tokens.item.weight, collaborative)
    assert torch.equal(model.content_tokens.item.weight, content) == (stage == "finetune")


def test_pretraining_lowers_both_language_models(tiny_llm_dir, tmp_path):
    _, model, train, _ = build(tiny_llm_dir, tmp_path, stage="pretrain", lambda_v=0.0)
    batch = next(iter(train))
    pos = (batch["label"] > 0.5).nonzero().view(-1).tolist()
    histories = model.histories(batch)
    docs = [histories[r] + [int(batch["item_id"][r])] for r in pos]

    def parts():
        with torch.no_grad():
            return (model.collaborative_lm(batch["user_id"][pos], docs).item(),
                    model.content_lm(batch["user_id"], batch["item_id"]).item())

    before = parts()
    steps(model, batch)
    after = parts()
    assert after[0] < before[0] and after[1] < before[1]


def test_mutual_regularisation_sums_over_token_occurrences_toward_the_detached_other_branch(tiny_llm_dir, tmp_path):
    _, model, _, _ = build(tiny_llm_dir, tmp_path, lambda_v=0.5)
    users, items = torch.tensor([1, 4, 1]), torch.tensor([2, 3, 7, 3, 3])  # repeats count once per occurrence
    collaborative, content = model.tokens, model.content_tokens
    by_hand = 0.0
    for u in users.tolist():
        by_hand += sum((float(a) - float(b)) ** 2 for a, b in zip(collaborative.user.weight[u], content.user.weight[u]))
    for i in items.tolist():
        by_hand += sum((float(a) - float(b)) ** 2 for a, b in zip(collaborative.item.weight[i], content.item.weight[i]))
    value = model.mutual_regularisation(collaborative, users, items)
    assert value.item() == pytest.approx(0.5 * by_hand, rel=1e-5)
    assert model.mutual_regularisation(content, users, items).item() == pytest.approx(0.5 * by_hand, rel=1e-5)
    value.backward()
    assert content.item.weight.grad is None  # the other branch is held fixed
    expected = 0.5 * 2 * 3 * (collaborative.item.weight[3] - content.item.weight[3]).detach()  # item 3 occurs 3 times
    assert torch.allclose(collaborative.item.weight.grad[3], expected, atol=1e-6)


def test_item_head_is_tied_to_the_item_tokens_and_predict_reads_full_sort(tiny_llm_dir, tmp_path):
    _, model, _, test = build(tiny_llm_dir, tmp_path)
    rows = test._dataset.inter_feat[torch.arange(4)]
    with torch.no_grad():
        full = model.full_sort_predict(rows).view(4, -1)
        hidden = model.query_hidden(rows)
        assert torch.allclose(full[:, 1:], hidden @ model.tokens.item.weight[1:].T, atol=1e-5)
        assert (full[:, 0] == -torch.inf).all()
        assert torch.allclose(model.predict(rows), full[torch.arange(4), rows["item_id"]])


def test_run_ranks_through_recboles_evaluator_with_small_checkpoint_and_reload(tiny_llm_dir, tmp_path):
    config = ranking_llm_config("CLLM4Rec", tiny_llm_dir, tmp_path, "full", epochs=1, pretrain_epochs=1,
                                metrics=["Recall", "NDCG"], topk=[3, 10], valid_metric="NDCG@10")
    _, (train, _, test), model, trainer = prepare(config)
    trainer.fit(train, None, saved=True, show_progress=False)
    result = trainer.evaluate(test, load_best_model=True)
    # the same metrics by hand from the model's own scores (one relevant item per query: recall = hit)
    ranks = target_ranks(model, test)
    assert result["recall@10"] == pytest.approx(round(hit(ranks, 10), 4), abs=1e-4)
    assert np.array_equal(result.first_hit, np.where(ranks < 10, ranks, -1))  # per query, for paired comparisons
    assert result["ndcg@10"] == pytest.approx(round(ndcg(ranks, 10), 4), abs=1e-4)
    state = read_checkpoint(trainer.saved_model_file)["state_dict"]
    assert state and all(k.split(".")[0] in ("tokens", "content_tokens") for k in state)  # never the LLM
    _, again, *_ = load_data_and_model(trainer.saved_model_file)
    rows = test._dataset.inter_feat[torch.arange(3)]
    with torch.no_grad():
        assert torch.allclose(again.full_sort_predict(rows), model.full_sort_predict(rows), atol=1e-5, equal_nan=True)
    # beside the checkpoint, each trained part as safetensors (nothing unpickled to load them)
    fresh = CLLM4Rec(config, train._dataset)
    fresh.load_adapters(trainer.saved_model_file[: -len(".pth")])
    assert torch.equal(fresh.tokens.item.weight, model.tokens.item.weight)
    assert torch.equal(fresh.content_tokens.user.weight, model.content_tokens.user.weight)


def test_a_coLLM_stage_is_one_clear_error(tiny_llm_dir, tmp_path):
    with pytest.raises(InputError, match=r"^stage: 'cie' is not one of pretrain, finetune, all \(the CLLM4Rec stages\)$"):
        build(tiny_llm_dir, tmp_path, stage="cie")


def test_a_ranking_model_keeps_the_datasets_split_and_its_own_mode():
    from recbole_collm import Config

    config = Config(model="CLLM4Rec", dataset="ml-100k", config_dict={"state": "WARNING"})
    assert config["eval_args"]["group_by"] == "user" and config["eval_args"]["order"] == "TO"  # ml-100k.yaml's
    assert config["eval_args"]["mode"] == {"valid": "full", "test": "full"}  # CLLM4Rec.yaml's


def test_a_valid_metric_the_run_does_not_compute_is_one_clear_error():
    from recbole_collm import Config

    with pytest.raises(InputError, match="valid_metric: 'NDCG@100' is not computed"):
        Config(model="CLLM4Rec", dataset="ml-100k", config_dict={"topk": [10, 20]})
