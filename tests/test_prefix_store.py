"""The prefix store across calls: scores and gradients equal to running without it (float32
store: 1e-5 relative; the default half-precision store close), hit counts, LRU bound, and
invalidation when an LLM weight changes."""
import pytest
import torch

from recbole_collm.errors import InputError
from recbole_collm.model.llm.prefix_store import PrefixStore


def scores(model, batch):
    with torch.no_grad():
        return model.logits(batch)


def test_second_pass_is_served_from_the_store_with_equal_scores(tiny_collm):
    reference, batch = tiny_collm("cie")
    reference.eval()
    expected = scores(reference, batch)
    model, _ = tiny_collm("cie", prefix_store_mb=64, prefix_store_dtype="float32")
    model.eval()
    store = model.prefix_store
    first = scores(model, batch)
    distinct = len(store.entries)
    assert store.hits == 0 and store.misses == distinct == 5  # 9 rows, 5 distinct histories (two empty)
    # scoring runs through <UserID> (rows of one user share it), but what is stored ends before
    # the slot: a function of the history alone, reusable by any user and pass
    assert all(model.prompts.placeholder_id not in key for key in store.entries)
    second = scores(model, batch)
    assert store.hits == distinct and store.misses == distinct and store.hit_rate == 0.5
    for got in (first, second):
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_cie_stage_gradients_equal_with_the_store(tiny_collm):
    grads = []
    for settings in ({"prefix_store_mb": 0}, {"prefix_store_mb": 64, "prefix_store_dtype": "float32"}):
        model, batch = tiny_collm("cie", **settings)
        model.train()
        for _ in range(2):  # the second call reads every prefix from the store
            model.zero_grad()
            model.calculate_loss(batch).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        if model.prefix_store is not None:
            assert model.prefix_store.hits == len(model.prefix_store.entries) > 0
    for name, grad in grads[0].items():
        assert grad.abs().max() > 0
        assert (grads[1][name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name


def test_half_precision_store_stays_close(tiny_collm):
    reference, batch = tiny_collm("cie")
    model, _ = tiny_collm("cie", prefix_store_mb=64)  # the default dtype: float16 entries
    assert model.prefix_store.dtype == torch.float16
    for m in (reference, model):
        m.eval()
    expected = scores(reference, batch)
    scores(model, batch)
    again = scores(model, batch)
    assert model.prefix_store.hits > 0
    assert torch.allclose(again, expected, atol=5e-3)
    assert not torch.equal(again, expected)  # it is a different precision, not the same path


def test_a_changed_llm_weight_empties_the_store(tiny_collm):
    model, batch = tiny_collm("cie", prefix_store_mb=64, prefix_store_dtype="float32")
    model.eval()
    scores(model, batch)
    lora = next(p for n, p in model.llm.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        lora.add_(0.2)  # what an optimizer step or load_state_dict does: an in-place write
    misses = model.prefix_store.misses
    changed = scores(model, batch)
    assert model.prefix_store.misses == misses + 5  # nothing stale was read
    reference, _ = tiny_collm("cie")
    reference.load_state_dict(model.state_dict())
    reference.eval()
    assert torch.allclose(changed, scores(reference, batch), rtol=1e-5, atol=1e-6)


def test_store_is_bounded_and_evicts_least_recently_used():
    store = PrefixStore(max_mb=3 * 4096 / 2**20, dtype=torch.float32)  # room for 3 entries of 4 KiB
    entry = [(torch.zeros(2, 8, 32), torch.zeros(2, 8, 32))]  # 2 x 2 KiB
    for key in [(1,), (2,), (3,)]:
        store.put(key, entry)
    assert store.get((1,)) is not None  # (1,) is now the most recently used
    store.put((4,), entry)
    assert list(store.entries) == [(3,), (1,), (4,)] and store.evictions == 1
    assert store.bytes == 3 * 4096 <= store.max_bytes
    assert store.get((2,)) is None and (store.hits, store.misses) == (1, 1)
    assert "hit rate 50.0%" in store.summary()


def test_bad_store_settings_are_one_error(tiny_collm):
    with pytest.raises(InputError, match=r"^prefix_store_mb: '-1' must be a number ≥ 0 \(MB; 0 or empty: no store\)$"):
        tiny_collm("cie", prefix_store_mb=-1)
    with pytest.raises(InputError, match="^prefix_store_dtype: 'int8' is not one of auto, float32, bfloat16, float16$"):
        tiny_collm("cie", prefix_store_dtype="int8")


def test_text_prompts_are_stored_too(tiny_collm):
    from recbole_collm.model.llm_recommender.tallrec import TALLRec

    reference, batch = tiny_collm("lora", TALLRec)
    model, _ = tiny_collm("lora", TALLRec, prefix_store_mb=64, prefix_store_dtype="float32")
    for m in (reference, model):
        m.eval()
    expected = scores(reference, batch)
    first, second = scores(model, batch), scores(model, batch)
    assert model.prefix_store.hits == model.prefix_store.misses == len(model.prefix_store.entries) == 5
    for got in (first, second):
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
