"""Prompt assembly: slot positions, left padding, Yes/No ids from the tokenizer."""
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from recbole_collm.model.llm.prompts import PromptBuilder, answer_token_ids
from tests.conftest import tiny_config

TITLES = np.array(["", "Heat (1995)", "Amélie (2001)", 'Say "Hi"', "Big"], dtype=object)


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    tok.padding_side = "left"
    return tok


def builders(tokenizer):
    config = tiny_config("CoLLM")
    full = PromptBuilder(tokenizer, config["prompt_template"], TITLES, "movie", with_ids=True)
    text = PromptBuilder(tokenizer, config["text_prompt_template"], TITLES, "movie", with_ids=False)
    return full, text


def test_yes_no_ids_derived_from_tokenizer(tokenizer):
    yes, no = answer_token_ids(tokenizer, "#Answer:")
    assert tokenizer.decode([yes]) == " Yes" and tokenizer.decode([no]) == " No"
    assert (yes, no) == (tokenizer.encode(" Yes", add_special_tokens=False)[0], tokenizer.encode(" No", add_special_tokens=False)[0])


def test_prompt_text_and_slots(tokenizer):
    full, text = builders(tokenizer)
    ids, upos, ipos = full.row(np.array([1, 2]), 4)
    decoded = tokenizer.decode(ids)
    assert 'following movies: "Heat (1995)", "Amélie (2001)".' in decoded
    assert "the movie titled Big with the feature" in decoded and decoded.endswith("#Answer:")
    assert ids[upos] == full.placeholder_id and ids[ipos] == full.placeholder_id
    assert tokenizer.decode(ids[upos - 2 : upos]).endswith("feature") and 0 < upos < ipos
    ids, upos, ipos = text.row(np.array([], dtype=int), 3)
    assert upos == ipos == -1 and "<UserID>" not in tokenizer.decode(ids)


def test_left_padded_batch_keeps_slots_and_masks(tokenizer):
    full, _ = builders(tokenizer)
    history = torch.tensor([[1, 2, 3], [0, 0, 0], [2, 0, 0]])
    length = torch.tensor([3, 0, 1])
    target = torch.tensor([4, 1, 3])
    batch = full.batch(history, length, target)
    for b in range(3):
        ids, upos, ipos = full.row(history[b, : length[b]].numpy(), int(target[b]))
        pad = batch["input_ids"].shape[1] - len(ids)
        assert batch["input_ids"][b, pad:].tolist() == ids
        assert batch["attention_mask"][b].tolist() == [0] * pad + [1] * len(ids)
        assert batch["position_ids"][b, pad:].tolist() == list(range(len(ids)))
        assert (batch["user_pos"][b], batch["item_pos"][b]) == (upos + pad, ipos + pad)
    # the pad token id (<|im_end|>) is not what the mask is built from
    assert (batch["input_ids"] == tokenizer.pad_token_id).sum() > (batch["attention_mask"] == 0).sum()


@pytest.mark.parametrize("template,message", [
    ("no slots #Answer:", "needs exactly one <HisItemTitleList>"),
    ("<HisItemTitleList> <TargetItemTitle> <UserID> #Answer:", "needs exactly one <TargetItemID>"),
    ("<HisItemTitleList> <UserID> <TargetItemTitle> <TargetItemID>", "must end with the answer cue"),
])
def test_bad_template_is_one_clear_error(tokenizer, template, message):
    with pytest.raises(ValueError, match=message):
        PromptBuilder(tokenizer, template, TITLES, "movie", with_ids=True)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

title_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(titles=st.lists(title_text, min_size=3, max_size=12), data=st.data())
def test_long_prompts_drop_oldest_history_only(tokenizer, titles, data):
    config = tiny_config("CoLLM")
    item_titles = np.array(["", *titles], dtype=object)
    n_items = len(titles)
    history = np.array(data.draw(st.lists(st.integers(1, n_items), max_size=10)), dtype=np.int64)
    target = data.draw(st.integers(1, n_items))
    unlimited = PromptBuilder(tokenizer, config["prompt_template"], item_titles, "movie", with_ids=True)
    full_len = len(unlimited.row(history, target)[0])
    bare_len = len(unlimited.row(history[:0], target)[0])
    limit = data.draw(st.integers(bare_len, full_len + 5))
    limited = PromptBuilder(tokenizer, config["prompt_template"], item_titles, "movie", with_ids=True, max_tokens=limit)
    ids, upos, ipos = limited.row(history, target)
    assert len(ids) <= limit
    kept = limited.fit_history(history, target)
    assert np.array_equal(kept, history[len(history) - len(kept):])  # a suffix: the most recent
    assert ids == unlimited.row(kept, target)[0]  # slots, target title and cue untouched
    assert ids[upos] == ids[ipos] == limited.placeholder_id
    assert ids[-len(limited.pieces[-1]):] == limited.pieces[-1]
    if len(kept) < len(history):  # one more title would not have fitted
        assert len(unlimited.row(history[len(history) - len(kept) - 1:], target)[0]) > limit


def test_prompt_too_small_for_the_fixed_part_is_one_clear_error(tokenizer):
    config = tiny_config("CoLLM")
    builder = PromptBuilder(tokenizer, config["prompt_template"], TITLES, "movie", with_ids=True, max_tokens=10)
    with pytest.raises(ValueError, match="max_prompt_tokens: 10 is too small"):
        builder.row(np.array([1]), 2)
