"""One text vector per item title: what A-LLMRec aligns collaborative item embeddings with.

The paper encodes titles with SBERT. No model hub is reachable here, so the encoder is a local
sentence-encoder folder when ``text_encoder_path`` names one (mean pooling over its last hidden
states, SBERT's default), else the recommender's own LLM: the mean of its last-layer states over
the title's tokens. Either is frozen (the paper fine-tunes SBERT in stage 1; a frozen encoder keeps
stage 1 cheap and the vectors cacheable). Vectors are computed once per (encoder, titles) and
cached under ``cache_root()/title_embeddings``: a model rebuilt from its checkpoint reads them back.
"""
from __future__ import annotations

import hashlib
import json
from logging import getLogger
from pathlib import Path

import torch

from recbole_collm.checkpoint import atomic_write
from recbole_collm.errors import MissingInputError
from recbole_collm.model.llm_recommender.llm.backbone import cache_root


def _mean_pooled(model, tokenizer, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        part = [t if t else " " for t in texts[start : start + batch_size]]
        ids = [tokenizer.encode(t, add_special_tokens=False) or [0] for t in part]
        width = max(len(x) for x in ids)
        input_ids = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for b, x in enumerate(ids):  # right-padded: mean pooling needs no position trick
            input_ids[b, : len(x)] = torch.tensor(x)
            mask[b, : len(x)] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
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
    # the LLM's weights, not only its name: a folder saved again with other weights is another encoder
    fingerprint = None if text_encoder_path else float(llm.get_input_embeddings().weight.double().sum())
    key = {"encoder": encoder, "weights": fingerprint, "titles": texts}
    if not text_encoder_path and compute_dtype != torch.float32:
        key["dtype"] = str(compute_dtype)  # float32 keys stay as they were: their caches remain valid
    digest = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:16]
    path = cache_root() / "title_embeddings" / f"{digest}.safetensors"
    from safetensors.torch import load_file, save_file

    if path.is_file():
        return load_file(str(path))["titles"]
    getLogger().info(f"title embeddings: encoding {len(texts)} titles with {encoder} (cached at {path})")
    if text_encoder_path:
        from transformers import AutoModel, AutoTokenizer

        folder = Path(text_encoder_path)
        if not (folder / "config.json").is_file():
            raise MissingInputError(f"text_encoder_path: '{text_encoder_path}' is not a local Hugging Face model folder (no config.json)")
        model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        vectors = _mean_pooled(model, AutoTokenizer.from_pretrained(folder, local_files_only=True), texts)
    else:
        vectors = _mean_pooled(llm.get_decoder(), tokenizer, [f" {t}" for t in texts])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(str(path), lambda tmp: save_file({"titles": vectors.contiguous()}, tmp))
    return vectors
