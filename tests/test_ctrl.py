"""CTRL (DIN) on the tiny dataset with SBERT: the cross-modal contrast against a hand computation,
each stage training what it should, the row's text, save → restore → the same scores."""
import math

import numpy as np
import pytest
import torch

from recbole_collm import load_data_and_model, run_recbole_collm
from recbole_collm.model.llm_recommender.ctrl import CrossModalAlignment
from recbole_collm.quick_start import prepare
from recbole_collm.trainer import LLMTrainer
from tests.conftest import TINY_YAML, tiny_config


def test_contrastive_loss_by_hand():
    torch.manual_seed(0)
    align = CrossModalAlignment(tab_dim=5, text_dim=4, size=3, parts=2, temperature=0.5)
    tab, text = torch.randn(4, 5), torch.randn(4, 4)
    with torch.no_grad():
        loss = float(align.loss(tab, text))
        a = align.tab_parts(align.tab(tab)).view(4, 2, 3)
        b = align.text_parts(align.text(text)).view(4, 2, 3)

    def cos(u, v):
        return float(u @ v) / math.sqrt(float(u @ u) * float(v @ v))

    def tab_to_text(i, j):  # each tabular part with its closest text part
        return sum(max(cos(a[i, m], b[j, n]) for n in range(2)) for m in range(2))

    def text_to_tab(j, i):
        return sum(max(cos(a[i, m], b[j, n]) for m in range(2)) for n in range(2))

    def nce(score, k):
        logits = [score(k, other) / 0.5 for other in range(4)]
        return -(logits[k] - math.log(sum(math.exp(x) for x in logits)))

    by_hand = (sum(nce(tab_to_text, i) for i in range(4)) / 4 + sum(nce(text_to_tab, j) for j in range(4)) / 4) / 2
    assert loss == pytest.approx(by_hand, abs=1e-5)


def test_stages_train_din_and_heads_then_din_alone_and_rows_read_as_text(tmp_path):
    config = tiny_config("CTRL", tmp_path, train_batch_size=16, show_progress=False)
    _, (train, _, _), model, _ = prepare(config)
    assert model.stages == ("align", "finetune") and model.stage == "align"
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"din", "alignment"}
    rows = next(iter(train))
    first = model.histories(rows, 10)[0]  # tiny.yaml: domain_item movie
    titles = " | ".join(model.titles[i] for i in first) or "nothing yet"
    assert model.row_texts(rows)[0] == f"This is a user, who has recently watched {titles}. This is a movie, title is {model.titles[int(rows['item_id'][0])]}."
    loss, logits = model.loss_and_logits(rows)
    loss.backward()
    assert model.alignment.tab.weight.grad is not None and model.din.item_embedding.weight.grad.abs().sum() > 0
    model.set_stage("finetune")
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"din"}
    model.eval()  # dropout off: two forwards of the same rows agree
    bce = torch.nn.functional.binary_cross_entropy_with_logits(model.din.logits(rows), rows["label"].float())
    assert float(model.calculate_loss(rows)) == pytest.approx(float(bce), abs=1e-6)


def test_saved_and_restored_it_scores_the_same(tmp_path):
    result = run_recbole_collm(model="CTRL", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "align_epochs": 1, "epochs": 2, "train_batch_size": 16, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING"})
    config, model, _, _, _, test_data = load_data_and_model(result["model_file"])
    assert type(model).__name__ == "CTRL" and model.stage == "finetune"
    again = LLMTrainer(config, model).evaluate(test_data, load_best_model=False)
    np.testing.assert_allclose(again.rows["score"], result["test_rows"]["score"], rtol=1e-5)
    assert again["auc"] == result["test_result"]["auc"]


def test_align_rows_contrasts_only_the_sampled_rows(tmp_path):
    config = tiny_config("CTRL", tmp_path, train_batch_size=32, align_rows=20)
    _, (train, _, _), model, _ = prepare(config)
    assert len(model.text_index) <= 20 and len(model.text_vectors) == len(model.text_index)
    model.eval()
    rows = next(iter(train))
    texts = model.row_texts(rows)
    kept = [r for r, t in enumerate(texts) if t in model.text_index]
    assert 2 <= len(kept) < len(rows)
    with torch.no_grad():
        loss, _ = model.loss_and_logits(rows)
        text = model.text_vectors[[model.text_index[texts[r]] for r in kept]]
        expected = model.alignment.loss(model.din.features(rows)[kept], text)
    assert float(loss) == pytest.approx(float(expected), abs=1e-6)
