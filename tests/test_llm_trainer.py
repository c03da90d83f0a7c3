"""The LLM trainer honours RecBole's training settings (learner, TensorBoard; the compute dtype: tests/test_precision.py); the model
scores with the branch its LLM needs (yes_logit, soft-capped logits, a biased LM head) and saves
and loads its own adapters."""
import pytest
import torch

from recbole_collm.model.llm_recommender.collm import CoLLM
from recbole_collm.model.llm_recommender.tallrec import TALLRec
from recbole_collm.restore import build_model
from recbole_collm.trainer import LLMTrainer
from tests.conftest import build_llm_run


@pytest.mark.parametrize("learner,kind", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW), ("Adam", torch.optim.Adam)])
def test_learner_is_recboles_setting_over_the_trainable_parameters(tiny_llm_dir, tmp_path, learner, kind):
    config, model, _, _ = build_llm_run(CoLLM, tiny_llm_dir, tmp_path, learner=learner, learning_rate=0.02,
                                cie_learning_rate=0.005)
    trainer = LLMTrainer(config, model)
    assert type(trainer.optimizer) is kind and trainer.optimizer.param_groups[0]["lr"] == 0.02
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in trainer.optimizer.param_groups[0]["params"]} == trainable
    trainer.enter_stage(1)  # the CIE stage: its own rate, its own parameters
    assert type(trainer.optimizer) is kind and trainer.optimizer.param_groups[0]["lr"] == 0.005
    assert all(".cie." in n or n.startswith("cie.") for n, p in model.named_parameters() if p.requires_grad)


def test_train_loss_and_validation_reach_tensorboard(tiny_llm_dir, tmp_path, monkeypatch):
    config, model, train, valid = build_llm_run(TALLRec, tiny_llm_dir, tmp_path, epochs=2, eval_step=1)
    trainer = LLMTrainer(config, model)
    logged = []
    monkeypatch.setattr(trainer.tensorboard, "add_scalar", lambda tag, value, step: logged.append((tag, step)))
    trainer.fit(train, valid, saved=False)
    assert [t for t in logged if t[0] == "Loss/Train"] == [("Loss/Train", 0), ("Loss/Train", 1)]
    assert [t for t in logged if t[0] == "Vaild_score"] == [("Vaild_score", 0), ("Vaild_score", 1)]  # RecBole's tag


def manual_scores(model, hidden, mode):
    """From the full LM head, as the LLM itself would compute its next-token logits."""
    logits = model.base_llm.get_output_embeddings()(hidden).float()
    cap = getattr(model.base_llm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    yes, no = logits[:, model.prompts.yes_id], logits[:, model.prompts.no_id]
    return yes - no if mode == "yes_no" else yes


@pytest.mark.parametrize("mode", ["yes_no", "yes_logit"])
def test_answer_score_with_softcap_and_a_biased_head_matches_the_full_head(tiny_llm_dir, tmp_path, mode):
    config, model, train, _ = build_llm_run(TALLRec, tiny_llm_dir, tmp_path, score_mode=mode)
    model.eval()
    batch = train._dataset.inter_feat[torch.arange(6)]
    with torch.no_grad():
        hidden = model.plain_hidden(batch)
        plain = model.answer_score(hidden)
        torch.testing.assert_close(plain, manual_scores(model, hidden, mode))
        old = model.base_llm.get_output_embeddings()
        head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
        head.weight.copy_(old.weight)
        torch.nn.init.normal_(head.bias, std=3.0)
        model.base_llm.set_output_embeddings(head)
        model.base_llm.config.final_logit_softcapping = 1.5
        capped = model.answer_score(hidden)
        torch.testing.assert_close(capped, manual_scores(model, hidden, mode))
        assert capped.abs().max() <= 3.0 + 1e-6 and not torch.allclose(capped, plain)
    if mode == "yes_logit":  # the paper's loss: BCE on the raw Yes logit
        labels = batch["label"].float()
        expected = torch.nn.functional.binary_cross_entropy_with_logits(model.logits(batch), labels)
        torch.testing.assert_close(model.calculate_loss(batch), expected)


def test_save_adapters_then_load_adapters_gives_the_same_scores(tiny_llm_dir, mf_checkpoint, tmp_path):
    config, model, train, _ = build_llm_run(CoLLM, tiny_llm_dir, tmp_path, cf_checkpoint=mf_checkpoint, stage="cie")
    with torch.no_grad():  # trained-looking weights: LoRA B starts at zero
        for name, param in model.named_parameters():
            if "lora_B" in name or name.startswith("cie.mlp"):
                param.normal_(std=0.5)
    model.eval()
    batch = train._dataset.inter_feat[torch.arange(6)]
    stem = str(tmp_path / "run")
    model.save_adapters(stem)
    assert (tmp_path / "run-adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "run-cie.safetensors").is_file()
    torch.manual_seed(1)
    other = build_model(config, train._dataset).eval()
    with torch.no_grad():
        expected = model.logits(batch)
        assert not torch.allclose(other.logits(batch), expected)
        other.load_adapters(stem)
        torch.testing.assert_close(other.logits(batch), expected)

