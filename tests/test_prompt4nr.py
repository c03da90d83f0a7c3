"""Prompt4NR on a tiny random LLaMA with SmolLM2's tokenizer: continuous prompt tokens where the
template puts them, trained with LoRA in one stage; saved, restored, scored the same."""
import numpy as np
import torch

from recbole_collm import load_data_and_model, run_recbole_collm
from recbole_collm.model.llm_recommender.collm import splice
from recbole_collm.quick_start import prepare
from recbole_collm.trainer import LLMTrainer
from tests.conftest import TINY_YAML, llm_config


def test_continuous_tokens_sit_in_the_template_slots_and_train_with_lora(tiny_llm_dir, tmp_path):
    config = llm_config("Prompt4NR", tiny_llm_dir, tmp_path, share_prefixes=False)
    _, (train, _, _), model, _ = prepare(config)
    assert model.stage == "one_step" and model.stages == ("one_step",)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "cie.tokens" in trainable and any("lora_" in n for n in trainable)
    assert all(n == "cie.tokens" or "lora_" in n for n in trainable)

    rows = next(iter(train))
    batch = model.prompts.batch(rows[model.ITEM_SEQ], rows[model.ITEM_SEQ_LEN], rows[model.ITEM_ID])
    decode = model.tokenizer.decode
    for b in range(len(rows)):
        ids, user, item = batch["input_ids"][b].tolist(), int(batch["user_pos"][b]), int(batch["item_pos"][b])
        assert decode(ids[user + 1 : item]).startswith(" Would the user enjoy the")  # after the history
        assert decode(ids[item + 1 :]) == ' Answer with "Yes" or "No". #Answer:'  # after the target title

    # the score is the plain forward with the two shared vectors spliced into those positions
    embeds = model.base_llm.get_input_embeddings()(batch["input_ids"])
    tokens = model.cie.tokens.detach()
    embeds = splice(embeds, batch["user_pos"], tokens[0].expand(len(rows), -1))
    embeds = splice(embeds, batch["item_pos"], tokens[1].expand(len(rows), -1))
    with torch.no_grad():
        hidden = model.base_llm.get_decoder()(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                              position_ids=batch["position_ids"]).last_hidden_state[:, -1]
        assert torch.allclose(model.logits(rows), model.answer_score(hidden), atol=1e-5)
    model.calculate_loss(rows).backward()
    assert model.cie.tokens.grad is not None and bool((model.cie.tokens.grad.abs().sum(-1) > 0).all())


def test_saved_and_restored_it_scores_the_same(tiny_llm_dir, tmp_path):
    result = run_recbole_collm(model="Prompt4NR", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "llm_path": str(tiny_llm_dir), "train_rows_limit": 16, "eval_rows_limit": 12, "epochs": 1, "lora_dropout": 0.0,
        "llm_compute_dtype": "float32", "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING", "show_progress": False})
    config, model, _, _, _, test_data = load_data_and_model(result["model_file"])
    assert type(model).__name__ == "Prompt4NR" and model.stage == "one_step"
    again = LLMTrainer(config, model).evaluate(test_data, load_best_model=False)
    np.testing.assert_allclose(again.rows["score"], result["test_rows"]["score"], rtol=1e-5)
    assert again["auc"] == result["test_result"]["auc"]
