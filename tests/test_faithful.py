"""Faithful to the official CoLLM code: frozen CF sources in eval mode, DIN's slot composition,
SASRec's 25-item source history, BOS for tokenizers that add one, per-dataset CF sizes."""
import numpy as np
import pytest
import torch

from recbole_collm import Config, get_model
from recbole_collm.data import CollmDataset
from recbole_collm.errors import InputError
from recbole_collm.model.llm.prompts import SLOT_PATTERN, PromptBuilder
from recbole_collm.model.sequential_recommender.dinctr import DINCTR, Dice
from recbole_collm.restore import build_model
from tests.conftest import llm_config, tiny_config

SOURCES = ["MF", "LightGCNCTR", "SASRecCTR", "DINCTR"]


def collm(tiny_llm_dir, tmp_path, checkpoint, **overrides):
    config = llm_config("CoLLM", tiny_llm_dir, tmp_path, cf_checkpoint=checkpoint, stage="cie", **overrides)
    train = CollmDataset(config).build()[0]
    return build_model(config, train), train


def rows(train, n=16):
    return train.inter_feat[torch.arange(n)]


# --- 1. frozen sources ------------------------------------------------------------------------
@pytest.mark.parametrize("source", SOURCES)
def test_frozen_source_gives_the_same_vectors_in_training_and_evaluation(source, cf_checkpoints, tiny_llm_dir, tmp_path):
    model, train = collm(tiny_llm_dir, tmp_path, cf_checkpoints[source])
    batch = rows(train)
    model.train()
    assert not model.cie.source.model.training  # pinned, whatever the trainer asks
    first, second = model.cie(batch), model.cie(batch)
    model.eval()
    evaluated = model.cie(batch)
    for a, b, c in zip(first, second, evaluated):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_tuned_source_follows_the_trainer_mode(cf_checkpoints, tiny_llm_dir, tmp_path):
    """T1: a tuned SASRec's dropout is on in training (two calls differ) and off in evaluation;
    the same check on the frozen source above would fail without the pinning."""
    model, train = collm(tiny_llm_dir, tmp_path, cf_checkpoints["SASRecCTR"], tune_cf_model=True)
    batch = rows(train)
    model.train()
    assert model.cie.source.model.training
    assert not torch.equal(model.cie(batch)[0], model.cie(batch)[0])
    model.eval()
    assert not model.cie.source.model.training
    assert torch.equal(model.cie(batch)[0], model.cie(batch)[0])


# --- 2. DIN as the paper's CoLLM-DIN ----------------------------------------------------------
def test_din_defaults_are_the_papers_mlp_with_dice():
    config = tiny_config("DINCTR")
    model = DINCTR(config, CollmDataset(config).build()[0])
    layers = list(model.mlp)
    linears = [m for m in layers if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(192, 200), (200, 80), (80, 1)]
    assert [type(m).__name__ for m in layers] == ["Linear", "Dice", "Dropout", "Linear", "Dice", "Dropout", "Linear"]
    assert model.vector_dim == 192 and model.user_embedding.num_embeddings == CollmDataset(config).user_num


def test_dice_is_the_papers_activation():
    dice = Dice(3).eval()
    with torch.no_grad():
        dice.alpha.copy_(torch.tensor([0.5, -1.0, 2.0]))
        dice.bn.running_mean.copy_(torch.tensor([0.1, 0.2, 0.3]))
        dice.bn.running_var.copy_(torch.tensor([1.0, 4.0, 0.25]))
    x = torch.randn(4, 5, 3)
    p = torch.sigmoid((x - dice.bn.running_mean) / torch.sqrt(dice.bn.running_var + 1e-8))
    assert torch.allclose(dice(x), p * x + (1 - p) * dice.alpha * x, atol=1e-6)
    assert any(param is dice.alpha for param in dice.parameters())  # learned, unlike RecBole's Dice
    dice.train()
    assert torch.isfinite(dice(torch.randn(1, 3))).all()  # one row in training: running statistics


def test_din_slots_have_the_official_composition(cf_checkpoints, tiny_llm_dir, tmp_path):
    model, train = collm(tiny_llm_dir, tmp_path, cf_checkpoints["DINCTR"])
    din = model.cie.source.model
    batch = rows(train)
    user, item = model.cie.source(batch)
    assert model.cie.source.dim == 3 * din.embedding_size == user.shape[1] == item.shape[1]
    translated = model.cie.source.translate(batch)
    target = din.item_embedding(translated["item_id"])
    pooled = []
    for r in range(len(batch)):
        n = int(translated["item_length"][r])
        history = din.history_embedding(translated["item_id_list"][r, :n])
        query = target[r].expand_as(history)
        weights = din.attention(torch.cat([query, history, query - history, query * history], -1)).squeeze(-1)
        pooled.append(weights @ history if n else torch.zeros(din.embedding_size))
    expected_user = torch.cat([target, torch.stack(pooled), din.user_embedding(translated["user_id"])], -1)
    assert torch.allclose(user, expected_user, atol=1e-5)
    assert torch.equal(item, torch.cat([target, target, target], -1))
    # the user slot depends on the target: CoLLM must not share a prefix through <UserID>
    assert model.cie.user_depends_on_target
    other = rows(train)
    other["item_id"] = torch.roll(batch["item_id"], 1)
    assert not torch.allclose(model.cie.source(other)[0], user)


@pytest.mark.parametrize("source", ["MF", "LightGCNCTR", "SASRecCTR"])
def test_other_sources_say_their_user_vector_ignores_the_target(source, cf_checkpoints, tiny_llm_dir, tmp_path):
    model, train = collm(tiny_llm_dir, tmp_path, cf_checkpoints[source])
    batch = rows(train)
    other = rows(train)
    other["item_id"] = torch.roll(batch["item_id"], 1)
    assert not model.cie.user_depends_on_target
    assert torch.equal(model.cie.source(other)[0], model.cie.source(batch)[0])


# --- 3. the SASRec source reads 25 items, the prompt 10 titles --------------------------------
def test_din_rows_of_one_user_keep_their_own_user_slot_on_the_shared_prefix_path(cf_checkpoints, tiny_llm_dir,
                                                                                 tmp_path, monkeypatch):
    """DIN's user slot holds the target and the target-attended history, so rows of one user may
    not share a prefix through <UserID>: scores equal the plain path's. The guard is what keeps
    them so — a DIN that claimed a target-blind user slot gives row 0's slot to every row."""
    from recbole.data.interaction import Interaction

    model, train = collm(tiny_llm_dir, tmp_path, cf_checkpoints["DINCTR"])
    model.eval()
    batch = rows(train, 1).repeat_interleave(4)  # one user, one history, four targets
    batch.update(Interaction({"item_id": torch.tensor([3, 7, 11, 19])}))
    user_vec, _ = model.cie(batch)
    assert (user_vec[1:] - user_vec[0]).abs().amax() > 1e-3  # the slot follows the target

    def scores(share: bool) -> torch.Tensor:
        model.share_prefixes = share
        with torch.no_grad():
            return model.logits(batch)

    plain = scores(False)
    assert (scores(True) - plain).abs().amax() < 1e-4  # float32 noise of the two paths
    monkeypatch.setattr(type(model.cie.source.model), "user_depends_on_target", False)
    broken = (scores(True) - plain).abs().amax()
    assert broken > 1e-3


def long_history_batch(train, length=25):
    batch = rows(train, 2)
    history = torch.zeros(2, train.config["MAX_ITEM_LIST_LENGTH"], dtype=torch.long)
    history[0, :length] = torch.arange(1, length + 1)
    history[1, :3] = torch.tensor([7, 8, 9])
    batch["item_id_list"] = history
    batch["item_length"] = torch.tensor([length, 3])
    return batch


def seen_history(model, batch):
    seen = {}
    cf = model.cie.source.model
    hook = cf.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    original = type(cf).user_item_vectors
    cf.user_item_vectors = lambda interaction: (seen.update(interaction=interaction), original(cf, interaction))[1]
    model.cie.source(batch)
    hook.remove()
    return seen["interaction"]


def test_sasrec_source_sees_the_last_25_items_and_the_prompt_the_last_10_titles(cf_checkpoints, tiny_llm_dir, tmp_path):
    model, train = collm(tiny_llm_dir, tmp_path, cf_checkpoints["SASRecCTR"])
    assert train.config["MAX_ITEM_LIST_LENGTH"] == 25 and model.cie.source.history_length == 25
    batch = long_history_batch(train)
    seen = seen_history(model, batch)
    assert seen["item_id_list"].shape[1] == 25
    assert seen["item_id_list"][0].tolist() == list(range(1, 26)) and int(seen["item_length"][0]) == 25
    assert seen["item_id_list"][1, :3].tolist() == [7, 8, 9] and int(seen["item_length"][1]) == 3
    ids, _, _ = model.full_prompts.row(batch["item_id_list"][0, :25].numpy(), int(batch["item_id"][0]))
    text = model.tokenizer.decode(ids)
    titles = train.item_titles
    assert all(f'"{titles[i]}"' in text for i in range(16, 26))
    assert f'"{titles[15]}"' not in text and text.count('"') == 2 * 10 + 4  # 10 titles + "Yes"/"No"


def test_din_source_reads_its_own_10_items_and_cf_history_length_caps_sasrec(cf_checkpoints, tiny_llm_dir, tmp_path):
    din, train = collm(tiny_llm_dir, tmp_path, cf_checkpoints["DINCTR"])
    seen = seen_history(din, long_history_batch(train))
    assert seen["item_id_list"].shape[1] == 10 and seen["item_id_list"][0].tolist() == list(range(16, 26))
    sasrec, train = collm(tiny_llm_dir, tmp_path, cf_checkpoints["SASRecCTR"], cf_history_length=5)
    seen = seen_history(sasrec, long_history_batch(train))
    assert seen["item_id_list"].shape[1] == 25  # the model's own width, padded
    assert seen["item_id_list"][0, :6].tolist() == [21, 22, 23, 24, 25, 0] and int(seen["item_length"][0]) == 5


def test_history_field_narrower_than_the_source_needs_is_one_error(cf_checkpoints, tiny_llm_dir, tmp_path):
    with pytest.raises(InputError, match=r"MAX_ITEM_LIST_LENGTH: 10, but the SASRecCTR source reads 25 history items"):
        collm(tiny_llm_dir, tmp_path, cf_checkpoints["SASRecCTR"], MAX_ITEM_LIST_LENGTH=10)


# --- 4. BOS -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama_style_dir(tmp_path_factory):
    """A word-level tokenizer that adds ``<s>`` to every text as LLaMA's does (built locally with
    the tokenizers library), with a tiny random LLaMA over its vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = tiny_config("CoLLM")
    dataset = CollmDataset(config)
    words = set()
    for text in [config["prompt_template"], config["text_prompt_template"], *dataset.item_titles]:
        text = SLOT_PATTERN.sub(" ", text.replace("{item}", "movie"))
        words |= {w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text)}
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(sorted(words))}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    folder = tmp_path_factory.mktemp("llama-style")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    llama = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(llama).save_pretrained(folder)
    return folder


def builder(tokenizer, with_ids=True):
    config = tiny_config("CoLLM")
    template = config["prompt_template"] if with_ids else config["text_prompt_template"]
    titles = np.array(["", "Heat (1995)", "Big", "Alpha Alpha (1990)"], dtype=object)
    return PromptBuilder(tokenizer, template, titles, "movie", with_ids=with_ids, max_tokens=512, history_length=10)


def test_bos_appears_exactly_once_for_a_llama_style_tokenizer(llama_style_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama_style_dir)
    full, text = builder(tokenizer), builder(tokenizer, with_ids=False)
    for history in (np.array([], dtype=int), np.array([1, 2, 3])):
        ids, upos, ipos = full.row(history, 2)
        assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
        # the slots are where the template says: the words before each are the template's
        assert ids[upos] == ids[ipos] == full.placeholder_id
        assert tokenizer.convert_ids_to_tokens(ids[upos - 1]) == "feature"
        assert tokenizer.convert_ids_to_tokens(ids[ipos - 1]) == "feature"
        assert tokenizer.convert_ids_to_tokens(ids[ipos + 1]) == "?"
        prefix, suffix, _, _ = full.split_row(history, 2)
        assert list(prefix) + suffix == ids and prefix[0] == tokenizer.bos_token_id
        text_ids, _, _ = text.row(history, 2)
        assert text_ids[0] == tokenizer.bos_token_id and text_ids.count(tokenizer.bos_token_id) == 1
    batch = full.batch(torch.tensor([[1, 0], [1, 2]]), torch.tensor([1, 2]), torch.tensor([3, 3]))
    starts = batch["attention_mask"].argmax(1)
    assert batch["input_ids"][torch.arange(2), starts].tolist() == [tokenizer.bos_token_id] * 2


def test_smollm2_prompts_get_no_bos(smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.bos_token_id is not None  # SmolLM2 defines one but never adds it
    ids, _, _ = builder(tokenizer).row(np.array([1, 2]), 3)
    assert tokenizer.bos_token_id not in ids
    assert ids[:3] == tokenizer.encode("#Question:", add_special_tokens=False)[:3]


def test_collm_with_bos_scores_the_same_on_the_plain_and_shared_prefix_paths(llama_style_dir, cf_checkpoints, tmp_path):
    model, train = collm(llama_style_dir, tmp_path, cf_checkpoints["MF"])
    model.eval()
    batch = rows(train, 12)
    seen = {}
    hook = model.base_llm.get_decoder().register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    with torch.no_grad():
        model.share_prefixes = False
        plain = model.logits(batch)
    hook.remove()
    prompts = model.prompts.batch(batch["item_id_list"], batch["item_length"], batch["item_id"])
    user_vec, _ = model.cie(batch)
    assert torch.allclose(seen["inputs_embeds"][torch.arange(12), prompts["user_pos"]], user_vec)
    with torch.no_grad():
        model.share_prefixes = True
        shared = model.logits(batch)
    assert torch.allclose(plain, shared, atol=1e-4)


# --- 5. the official CF sizes on ml-1m-collm --------------------------------------------------
def test_ml1m_collm_properties_hold_the_official_cf_sizes():
    sizes = {name: Config(model=name, dataset="ml-1m-collm", config_dict={"state": "WARNING"}) for name in SOURCES}
    assert sizes["MF"]["embedding_size"] == 256
    assert sizes["LightGCNCTR"]["embedding_size"] == 64
    assert sizes["SASRecCTR"]["hidden_size"] == 64 and sizes["SASRecCTR"]["MAX_ITEM_LIST_LENGTH"] == 25
    assert sizes["DINCTR"]["embedding_size"] * 3 == 192 and sizes["DINCTR"]["MAX_ITEM_LIST_LENGTH"] == 10
    # dataset-specific: ml-100k keeps the model yaml's size; the user's setting still wins
    assert Config(model="MF", dataset="ml-100k")["embedding_size"] == 64
    assert Config(model="MF", dataset="ml-1m-collm", config_dict={"embedding_size": 32})["embedding_size"] == 32
    assert get_model("DINCTR") is DINCTR
