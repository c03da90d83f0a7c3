"""Prompts that mix text tokens with vectors in the LLM's embedding space (soft tokens): user/item
tokens that are not in the vocabulary (CLLM4Rec), projected collaborative embeddings next to
titles (A-LLMRec). A prompt is a list of token ids in which ``SLOT`` marks a position filled by
the row's next vector, in order; nothing is searched for after tokenization."""
from __future__ import annotations

import torch

from recbole_collm.model.llm.prompts import pad_ids

SLOT = -1


def embed_soft_prompts(
    embedding: torch.nn.Module, seqs: list[list[int]], vectors: list[torch.Tensor], pad_id: int, left: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(embeds, attention_mask, position_ids)`` of ``seqs``, padded on the left (last-position
    reading) or on the right (prefixes the shared-prefix engine extends). ``vectors[b]`` holds one
    row per ``SLOT`` of ``seqs[b]``; the result is differentiable with respect to them. Masks come
    from lengths, never from ``ids != pad_id``."""
    device = embedding.weight.device
    ids, mask = (t.to(device) for t in pad_ids(seqs, pad_id, left))
    width = ids.shape[1]
    slots = ids == SLOT
    embeds = embedding(ids.masked_fill(slots, pad_id))
    rows = [v for v in vectors if v is not None and len(v)]
    filled = int(slots.sum())
    if filled:
        source = torch.cat(rows).to(embeds.dtype)
        if len(source) != filled:
            raise ValueError(f"{filled} slots in the prompts, {len(source)} vectors given")
        embeds = embeds.masked_scatter(slots.unsqueeze(-1), source)  # row-major: each row's vectors in order
    positions = (mask.cumsum(-1) - 1).clamp(min=0) if left else torch.arange(width, device=device).expand(len(seqs), -1)
    return embeds, mask, positions
