"""CoLLM on a tiny random LLaMA with SmolLM2's tokenizer: splice, stages, alignment, reload."""

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data.interaction import Interaction
from sklearn.metrics import roc_auc_score

from recbole_collm import load_data_and_model, run_recbole_collm
from recbole_collm.data import CollmDataset
from recbole_collm.errors import InputError
from recbole_collm.model.llm_recommender.collm import splice
from recbole_collm.model.llm_recommender.tallrec import TALLRec
from recbole_collm.restore import build_model, collaborative_source, restore, restore_adapters
from recbole_collm.trainer import LLMTrainer
from tests.conftest import ROOT, TINY_YAML, llm_config


def uauc_by_hand(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """The CoLLM paper's UAUC: each user's AUC over their rows, unweighted mean over the users
    with both labels."""
    values = [roc_auc_score(labels[users == u], scores[users == u]) for u in np.unique(users)
              if len(np.unique(labels[users == u])) == 2]
    return float(np.mean(values))


def train_split(config):
    return CollmDataset(config).build()[0]


def test_splice_puts_vectors_exactly_at_slots():
    embeds = torch.randn(3, 7, 4)
    positions = torch.tensor([6, 2, 4])
    vectors = torch.randn(3, 4, requires_grad=True)
    out = splice(embeds, positions, vectors)
    for b in range(3):
        assert torch.equal(out[b, positions[b]], vectors[b])
        others = [t for t in range(7) if t != positions[b]]
        assert torch.equal(out[b, others], embeds[b, others])
    out.sum().backward()
    assert torch.equal(vectors.grad, torch.ones(3, 4))


def test_model_splices_cie_vectors_at_slot_positions_of_left_padded_batch(tiny_llm_dir, mf_checkpoint, tmp_path):
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=mf_checkpoint, stage="cie", share_prefixes=False)
    train = train_split(config)
    model = build_model(config, train).eval()
    batch = train.inter_feat[torch.arange(6)]
    batch["item_length"] = torch.tensor([0, 1, 3, 10, 2, 5])  # mixed lengths: left padding differs
    seen = {}
    decoder = model.base_llm.get_decoder()
    hook = decoder.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    with torch.no_grad():
        model.logits(batch)
    hook.remove()
    prompts = model.prompts.batch(batch["item_id_list"], batch["item_length"], batch["item_id"])
    user_vec, item_vec = model.cie(batch)
    embeds = seen["inputs_embeds"]
    rows = torch.arange(6)
    assert torch.allclose(embeds[rows, prompts["user_pos"]], user_vec)
    assert torch.allclose(embeds[rows, prompts["item_pos"]], item_vec)
    plain = model.base_llm.get_input_embeddings()(prompts["input_ids"])
    mask = torch.ones_like(prompts["input_ids"], dtype=torch.bool)
    mask[rows, prompts["user_pos"]] = False
    mask[rows, prompts["item_pos"]] = False
    assert torch.equal(embeds[mask], plain[mask])


def test_left_padding_does_not_change_a_rows_score(tiny_llm_dir, tmp_path):
    config = llm_config("TALLRec", tiny_llm_dir, tmp_path)
    train = train_split(config)
    model = TALLRec(config, train).eval()
    batch = train.inter_feat[torch.arange(5)]
    batch["item_length"] = torch.tensor([0, 4, 10, 1, 7])
    with torch.no_grad():
        together = model.logits(batch)
        alone = torch.cat([model.logits(batch[[i]]) for i in range(5)])
    assert torch.allclose(together, alone, atol=1e-4)


def snapshot(module, predicate):
    return {n: p.detach().clone() for n, p in module.named_parameters() if predicate(n)}


def one_step(config, model, train):
    trainer = LLMTrainer(config, model)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda _: 1.0)
    batch = train.inter_feat[torch.arange(8)]
    model.train()
    loss = model.calculate_loss(batch)
    loss.backward()
    trainer.optimizer.step()


@pytest.mark.parametrize("stage", ["cie", "lora", "one_step"])
def test_gradients_reach_only_the_stage_parameters(tiny_llm_dir, mf_checkpoint, tmp_path, stage):
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=mf_checkpoint, stage=stage, learning_rate=0.05)
    train = train_split(config)
    model = build_model(config, train)
    lora = snapshot(model, lambda n: "lora_" in n)
    base = snapshot(model, lambda n: n.startswith("llm.") and "lora_" not in n)
    mlp = snapshot(model, lambda n: n.startswith("cie.mlp"))
    cf = snapshot(model, lambda n: n.startswith("cie.source"))
    one_step(config, model, train)
    after = dict(model.named_parameters())
    changed = lambda snap: any(not torch.equal(after[n], v) for n, v in snap.items())  # noqa: E731
    assert not changed(base)  # the LLM never moves
    assert not changed(cf)  # the checkpoint's CF model is frozen unless tune_cf_model
    assert changed(lora) == (stage in ("lora", "one_step"))
    assert changed(mlp) == (stage in ("cie", "one_step"))


def test_ids_align_by_token_with_a_permuted_checkpoint(tiny_llm_dir, tmp_path):
    # the same rows in reverse file order: RecBole assigns internal ids in order of appearance
    raw = pd.read_csv(ROOT / "tests/data/tiny/tiny.inter", sep="\t")
    folder = tmp_path / "data" / "tinyrev"
    folder.mkdir(parents=True)
    raw.iloc[::-1].to_csv(folder / "tinyrev.inter", sep="\t", index=False)
    (folder / "tinyrev.item").write_text((ROOT / "tests/data/tiny/tiny.item").read_text())
    result = run_recbole_collm(model="MF", dataset="tinyrev", config_file_list=[TINY_YAML], config_dict={
        "epochs": 1, "data_path": str(tmp_path / "data"), "checkpoint_dir": str(tmp_path / "ck"), "state": "WARNING"})
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=result["model_file"], cf_other_dataset=True)
    dataset = CollmDataset(config)
    source = collaborative_source(config, dataset)
    cf_config, cf_model, cf_dataset, *_ = load_data_and_model(result["model_file"])
    assert not np.array_equal(dataset.field2id_token["user_id"], cf_dataset.field2id_token["user_id"])
    batch = dataset.inter_feat[torch.arange(20)] if not isinstance(dataset.inter_feat, pd.DataFrame) else None
    train = dataset.build()[0]
    batch = train.inter_feat[torch.arange(20)]
    user_vec, item_vec = source(batch)
    user_tokens = dataset.id2token("user_id", batch["user_id"].numpy())
    item_tokens = dataset.id2token("item_id", batch["item_id"].numpy())
    cf_users = torch.tensor(cf_dataset.token2id("user_id", user_tokens))
    cf_items = torch.tensor(cf_dataset.token2id("item_id", item_tokens))
    assert torch.allclose(user_vec, cf_model.user_embedding(cf_users))
    assert torch.allclose(item_vec, cf_model.item_embedding(cf_items))


def test_checkpoint_of_unrelated_dataset_is_rejected(tiny_llm_dir, tmp_path):
    result = run_recbole_collm(model="MF", dataset="ml-100k", config_dict={
        "epochs": 1, "checkpoint_dir": str(tmp_path), "state": "WARNING", "eval_subsets": False,
        "metrics": ["AUC"], "train_rows_limit": 2000, "eval_rows_limit": 200})
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=result["model_file"])
    with pytest.raises(ValueError, match="^cf_checkpoint: .* was trained on 'ml-100k', this run is on 'tiny'"):
        build_model(config, train_split(config))
    # taken when told, the tokens must still overlap: ml-100k's numeric ids cover tiny's, not the reverse
    config["cf_other_dataset"] = True
    with pytest.raises(ValueError, match=r"^cf_checkpoint: .* was trained on 'ml-100k'; user_id tokens overlap 100.0% / 4.2% "):
        build_model(config, train_split(config))


def test_two_step_run_saves_small_checkpoint_and_reloads_same_scores(tiny_llm_dir, mf_checkpoint, tmp_path):
    config_dict = dict(llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=mf_checkpoint).final_config_dict)
    overrides = {k: config_dict[k] for k in ("llm_path", "train_rows_limit", "eval_rows_limit", "checkpoint_dir",
                                             "lora_dropout", "warmup_steps", "cf_checkpoint")}
    result = run_recbole_collm(model="CoLLM", dataset="tiny", config_file_list=[TINY_YAML],
                               config_dict={**overrides, "state": "WARNING", "epochs": 1, "show_progress": False,
                                            # the CIE stage validates better (it learns the base rate): it is kept
                                            "valid_metric": "logloss", "cie_learning_rate": 0.01, "cie_epochs": 3})
    files = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert any(f.endswith("-lora.pth") for f in files) and any(f.endswith("-adapter") for f in files)
    checkpoint = torch.load(result["model_file"], weights_only=False)
    assert all("lora_" in k or k.startswith("cie.") for k in checkpoint["state_dict"])
    assert (tmp_path / "saved" / result["model_file"].split("/")[-1]).stat().st_size < 5_000_000

    config, model, _, _, _, test_data = load_data_and_model(result["model_file"])
    assert model.stage == "cie"  # the stage it was saved in, not the first of stage: all
    again = LLMTrainer(config, model).evaluate(test_data, load_best_model=False)
    np.testing.assert_allclose(again.rows["score"], result["test_rows"]["score"], rtol=1e-5)
    # the same model rebuilt from its parts and their config alone (peft's symmetry; nothing unpickled)
    rebuilt = restore_adapters(result["model_file"][: -len(".pth")])
    assert rebuilt.model.stage == "cie" and rebuilt.config["cf_checkpoint"] == mf_checkpoint
    from_parts = LLMTrainer(rebuilt.config, rebuilt.model).evaluate(test_data, load_best_model=False)
    np.testing.assert_allclose(from_parts.rows["score"], result["test_rows"]["score"], rtol=1e-5)

    # the collaborative source alone, on the same test rows: the MF checkpoint's own scores
    mf = restore(mf_checkpoint).model
    rows = test_data._dataset.inter_feat
    with torch.no_grad():
        expected = roc_auc_score(rows["label"].numpy(), mf.eval().predict(rows).numpy())
        mf_scores = mf.predict(rows).numpy()
    assert result["source_test_result"]["auc"] == pytest.approx(expected, abs=1e-4)  # RecBole rounds to 4 places
    # UAUC of each, by hand from its own scores on the same rows (mean per-user AUC)
    assert result["source_test_result"]["uauc"] == pytest.approx(
        uauc_by_hand(rows["user_id"].numpy(), rows["label"].numpy(), mf_scores), abs=1e-4)
    own = result["test_rows"]
    assert result["test_result"]["uauc"] == pytest.approx(
        uauc_by_hand(np.asarray(own["user"]), np.asarray(own["label"]), np.asarray(own["score"])), abs=1e-4)


def test_4bit_on_cpu_is_a_clear_error(tiny_llm_dir, tmp_path):
    config = llm_config("TALLRec", tiny_llm_dir, tmp_path, load_in_4bit=True)
    with pytest.raises(InputError, match="load_in_4bit: needs a CUDA GPU"):
        TALLRec(config, train_split(config))


def test_missing_llm_path_is_a_clear_error_before_anything_loads(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^llm_path: '.*nowhere' not found; expected a local Hugging Face model folder"):
        llm_config("TALLRec", tmp_path / "nowhere", tmp_path)


def test_stage_cie_starts_from_a_tallrec_checkpoint(tiny_llm_dir, mf_checkpoint, tmp_path):
    tallrec = run_recbole_collm(model="TALLRec", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "llm_path": str(tiny_llm_dir), "train_rows_limit": 16, "eval_rows_limit": 8, "epochs": 1, "learning_rate": 0.05,
        "checkpoint_dir": str(tmp_path), "state": "WARNING", "show_progress": False, "warmup_steps": 0})
    saved = torch.load(tallrec["model_file"], weights_only=False)["state_dict"]
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=mf_checkpoint, stage="cie",
                        lora_checkpoint=tallrec["model_file"])
    model = build_model(config, train_split(config))
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in saved.items())
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)  # the run trained LoRA


def test_icl_trains_nothing_and_still_evaluates(tiny_llm_dir, tmp_path):
    result = run_recbole_collm(model="ICL", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "llm_path": str(tiny_llm_dir), "eval_rows_limit": 8, "checkpoint_dir": str(tmp_path),
        "state": "WARNING", "show_progress": False})
    rows = result["test_rows"]
    assert result["test_result"]["auc"] == pytest.approx(roc_auc_score(rows["label"], rows["score"]), abs=1e-4)
    assert torch.load(result["model_file"], weights_only=False)["state_dict"] == {}


def test_adapter_and_cie_weights_are_safetensors(tiny_llm_dir, mf_checkpoint, tmp_path):
    from safetensors.torch import load_file

    result = run_recbole_collm(model="CoLLM", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "llm_path": str(tiny_llm_dir), "train_rows_limit": 16, "eval_rows_limit": 8, "epochs": 1, "learning_rate": 0.05,
        "checkpoint_dir": str(tmp_path), "state": "WARNING", "show_progress": False, "warmup_steps": 0,
        "cf_checkpoint": mf_checkpoint})
    stem = result["model_file"][: -len(".pth")]
    saved = torch.load(result["model_file"], weights_only=False)["state_dict"]
    cie = load_file(f"{stem}-cie.safetensors")
    assert cie and all(torch.equal(cie[k], saved[f"cie.{k}"]) for k in cie)
    # stage 2 from the peft adapter folder: the same LoRA weights as from the .pth
    from_dir = build_model(llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=mf_checkpoint,
                                lora_checkpoint=f"{stem}-adapter"), train_split(llm_config("CoLLM", tiny_llm_dir, tmp_path)))
    own = from_dir.state_dict()
    lora = {k: v for k, v in saved.items() if "lora_" in k}
    assert lora and all(torch.equal(own[k], v) for k, v in lora.items())


@pytest.mark.parametrize("source", ["LightGCNCTR", "SASRecCTR", "DINCTR"])
def test_every_cf_checkpoint_feeds_the_cie(source, cf_checkpoints, tiny_llm_dir, tmp_path):
    """The slots hold the CF model's own vectors: each row's user and item (and, for the sequence
    models, its last 3 history items: cf_history_length) looked up by token in the checkpoint's
    dataset and run through the restored model by hand."""
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=cf_checkpoints[source], stage="cie",
                        cf_history_length=3)
    train = train_split(config)
    model = build_model(config, train).eval()
    by_length = torch.argsort(train.inter_feat["item_length"], stable=True)
    batch = train.inter_feat[torch.cat([by_length[:4], by_length[-4:]])]  # the shortest and longest histories
    with torch.no_grad():
        user_vec, item_vec = model.cie.source(batch)
        cf = restore(cf_checkpoints[source])
        cf_model, cf_data = cf.model.eval(), cf.dataset

        def cf_ids(field: str, ids) -> torch.Tensor:
            ids = np.asarray(ids, dtype=np.int64)
            if not len(ids):
                return torch.zeros(0, dtype=torch.long)
            return torch.as_tensor(cf_data.token2id(field, train.id2token(field, ids)))

        users, items = cf_ids("user_id", batch["user_id"]), cf_ids("item_id", batch["item_id"])
        if source == "LightGCNCTR":
            user_all, item_all = cf_model.forward()
            expected = user_all[users], item_all[items]
        else:
            width = cf_model.max_seq_length
            seqs = torch.zeros(len(batch), width, dtype=torch.long)
            lengths = torch.zeros(len(batch), dtype=torch.long)
            for r, (seq, n) in enumerate(zip(batch["item_id_list"].tolist(), batch["item_length"].tolist())):
                last = cf_ids("item_id", seq[:n])[-3:]
                seqs[r, : len(last)], lengths[r] = last, len(last)
            assert lengths.max() == 3 and lengths.min() < 3  # some rows cut, some shorter
            if source == "SASRecCTR":
                expected = cf_model.forward(seqs, lengths.clamp(min=1)), cf_model.item_embedding(items)
            else:
                rows = Interaction({"user_id": users, "item_id": items, "item_id_list": seqs, "item_length": lengths})
                expected = cf_model.features(rows), cf_model.item_embedding(items).repeat(1, 3)
    assert user_vec.shape == item_vec.shape == (8, model.cie.source.dim)
    torch.testing.assert_close(user_vec, expected[0])
    torch.testing.assert_close(item_vec, expected[1])
    assert torch.isfinite(model.logits(batch)).all()


def test_t1_tunes_the_checkpoint_model(tiny_llm_dir, mf_checkpoint, tmp_path):
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=mf_checkpoint, stage="cie",
                        tune_cf_model=True, learning_rate=0.05)
    train = train_split(config)
    model = build_model(config, train)
    cf = snapshot(model, lambda n: n.startswith("cie.source"))
    one_step(config, model, train)
    after = dict(model.named_parameters())
    assert any(not torch.equal(after[n], v) for n, v in cf.items())


def test_each_stage_has_its_own_rows_learning_rate_and_epochs(tiny_llm_dir, mf_checkpoint, tmp_path):
    from recbole_collm.quick_start import prepare

    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=mf_checkpoint, stage="all", epochs=1,
                        cie_epochs=2, learning_rate=0.01, cie_learning_rate=0.002, train_rows_limit=24,
                        lora_train_rows=8, eval_rows_limit=8)
    _, (train, valid, _), model, trainer = prepare(config)
    assert len(train) == 3  # 24 rows in batches of 8
    seen, rows = [], []
    train_epoch, loss_and_logits = trainer._train_epoch, model.loss_and_logits

    def spy(data, epoch_idx, **kwargs):
        seen.append((model.stage, epoch_idx, trainer.optimizer.param_groups[0]["initial_lr"]))
        rows.append(0)
        return train_epoch(data, epoch_idx, **kwargs)

    def count(interaction):
        rows[-1] += len(interaction)
        return loss_and_logits(interaction)

    trainer._train_epoch, model.loss_and_logits = spy, count
    trainer.fit(train, valid, saved=False)
    assert seen == [("lora", 0, 0.01), ("cie", 0, 0.002), ("cie", 1, 0.002)]
    assert rows == [8, 24, 24]
    # the schedule ends with the stage: one optimizer step per 2 batches (gradient accumulation)
    assert trainer.scheduler.last_epoch == 2 * 2


@pytest.mark.parametrize("key,value", [("cie_epochs", 0), ("cie_epochs", 1.5), ("cie_learning_rate", -0.1),
                                       ("cie_learning_rate", "fast"), ("lora_train_rows", -5)])
def test_cie_stage_settings_are_checked(tiny_llm_dir, tmp_path, key, value):
    with pytest.raises(InputError, match=rf"^{key}: '{value}' must be a positive (whole )?number \(or empty\)$"):
        llm_config("CoLLM", tiny_llm_dir, tmp_path, **{key: value})
