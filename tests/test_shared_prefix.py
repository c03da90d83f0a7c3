"""The performance engine equals the plain full-prompt path: scores (1e-4) and gradients (1e-5
relative), with left padding, empty histories, groups of one row and shared prefixes."""
import pytest
import torch

from recbole_collm.compat import cache_kwargs
from recbole_collm.model.llm.batching import split_batch
from recbole_collm.model.llm_recommender.collm import CoLLM
from recbole_collm.model.llm_recommender.tallrec import TALLRec


def both_paths(model, batch):
    model.share_prefixes = False
    plain = model.logits(batch)
    model.share_prefixes = True
    cached = model.logits(batch)
    return plain, cached


def test_split_rows_rebuild_the_full_prompt_and_share_prefixes(tiny_collm):
    model, batch = tiny_collm("cie")
    prompts = model.full_prompts
    assert batch["user_id"][0] != batch["user_id"][1]  # both with an empty history
    for users in (None, batch["user_id"]):
        split = split_batch(prompts, batch["item_id_list"], batch["item_length"], batch["item_id"], users)
        for r in range(split.rows):
            ids, upos, ipos = prompts.row(batch["item_id_list"][r][: batch["item_length"][r]].numpy(), int(batch["item_id"][r]))
            prefix = split.prefixes[split.group[r]]
            assert list(prefix) + split.suffixes[r] == ids
            assert (split.user_pos[r], split.item_pos[r]) == (upos, ipos)
            if users is None:
                assert upos == len(prefix)  # the prefix ends right before <UserID>
            else:
                assert upos < len(prefix) <= ipos  # ... or runs through it, up to the target
        assert len({split.group[3], *split.group[6:]}) == 1  # four rows, one prefix
        same_text = split.group[0] == split.group[1]
        assert same_text == (users is None)  # same prefix text, but a user slot is per user
        assert len(split.prefixes) == (5 if users is None else 6)


@pytest.mark.parametrize("stage,model_cls", [("cie", CoLLM), ("lora", CoLLM), ("lora", TALLRec)])
def test_scores_equal_the_plain_path(tiny_collm, stage, model_cls):
    model, batch = tiny_collm(stage, model_cls)
    model.eval()
    with torch.no_grad():  # scoring: the prefix runs through <UserID> when there is one
        plain, cached = both_paths(model, batch)
        one_by_one = torch.cat([model.logits(batch[[r]]) for r in range(len(batch))])
    assert plain.std() > 1e-3  # rows really differ
    torch.testing.assert_close(cached, plain, atol=1e-4, rtol=0)
    torch.testing.assert_close(one_by_one, plain, atol=1e-4, rtol=0)
    _, with_grad = both_paths(model, batch)  # training layout: the prefix stops before <UserID>
    torch.testing.assert_close(with_grad.detach(), plain, atol=1e-4, rtol=0)


def test_truncated_histories_never_share_a_wrong_prefix(tiny_collm):
    """With a tight token budget the kept history depends on the target title's length."""
    model, batch = tiny_collm("cie", max_prompt_tokens=90)
    model.eval()
    with torch.no_grad():
        plain, cached = both_paths(model, batch)
    torch.testing.assert_close(cached, plain, atol=1e-4, rtol=0)


@pytest.mark.parametrize("stage", ["cie", "lora", "one_step"])
def test_gradients_equal_the_plain_path(tiny_collm, stage):
    model, batch = tiny_collm(stage)
    model.eval()  # no dropout: both paths see the same function
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable

    def grads(share_prefixes):
        model.share_prefixes = share_prefixes
        model.zero_grad()
        model.calculate_loss(batch).backward()
        return {n: p.grad.clone() for n, p in trainable}

    plain, cached = grads(False), grads(True)
    for name, grad in plain.items():
        assert grad.abs().max() > 0, name
        scale = grad.abs().max()
        assert (cached[name] - grad).abs().max() <= 1e-5 * scale, name


def test_cie_stage_runs_prefixes_without_autograd(tiny_collm):
    model, batch = tiny_collm("cie", prefix_batch_size=16, llm_batch_size=32)
    calls = []
    decoder = model.base_llm.get_decoder()
    (cache_name,) = cache_kwargs(decoder, None)  # past_key_values or cache, as this transformers names it
    hook = decoder.register_forward_pre_hook(
        lambda m, a, kw: calls.append((kw.get(cache_name) is None, torch.is_grad_enabled())), with_kwargs=True
    )
    model.calculate_loss(batch).backward()
    hook.remove()
    assert calls == [(True, False), (False, True)]  # prefix: no autograd; suffix: autograd
    model.set_stage("lora")
    calls.clear()
    hook = decoder.register_forward_pre_hook(
        lambda m, a, kw: calls.append((kw.get(cache_name) is None, torch.is_grad_enabled())), with_kwargs=True
    )
    model.calculate_loss(batch)
    hook.remove()
    assert calls == [(True, True), (False, True)]  # LoRA trains: the shared prefix keeps its graph


@pytest.mark.parametrize("pack_tokens", [1, 40])
def test_a_prefix_with_more_suffix_tokens_than_a_pack_holds_gets_several_packs(tiny_collm, monkeypatch, pack_tokens):
    """Rows of one prefix beyond ``PACK_TOKENS`` suffix tokens go into further packs, each reading
    the prefix's keys/values: the same scores and gradients as one pack per prefix."""
    from recbole_collm.model.llm import shared_prefix

    model, batch = tiny_collm("lora")
    model.eval()
    packs = []
    real_cache = shared_prefix.kv_cache

    def counted(layers):
        packs.append(layers[0][0].shape[0])  # sequences in this suffix forward
        return real_cache(layers)

    monkeypatch.setattr(shared_prefix, "kv_cache", counted)

    def run():
        packs.clear()
        model.zero_grad()
        scores = model.logits(batch)
        scores.sum().backward()
        return scores.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, sum(packs)

    reference = run()
    monkeypatch.setattr(shared_prefix, "PACK_TOKENS", pack_tokens)
    split = run()
    torch.testing.assert_close(split[0], reference[0], atol=1e-5, rtol=0)
    for name, grad in reference[1].items():
        assert (split[1][name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name
    # mixed_batch: 9 rows, 6 distinct prefixes (one shared by 4 rows); a 1-token pack holds one suffix
    assert reference[2] == 6 and (split[2] == 9 if pack_tokens == 1 else reference[2] < split[2] <= 9)


def test_the_engine_passes_the_cache_under_the_name_the_decoder_reads(tiny_collm, recwarn):
    """transformers renamed the decoder's ``past_key_values`` to ``cache`` (the old name warns on
    every forward until its removal): the engine's forwards raise no such warning, and scores
    equal the plain path's."""
    model, batch = tiny_collm("cie")
    with torch.no_grad():
        plain, cached = both_paths(model, batch)
    assert torch.allclose(plain, cached, atol=1e-4)
    assert not [w for w in recwarn if "past_key_values" in str(w.message)]
