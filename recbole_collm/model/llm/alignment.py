"""A-LLMRec's two learned bridges: the item–text aligner (stage 1) and the projectors of the joint
item latents and the CF user representation into the LLM's token space (stage 2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Standardize(nn.Module):
    """Each dimension to zero mean and unit variance over the catalogue (``vectors``: one row per
    item). Why: SASRec's item embeddings have RMS ≈ 0.03 and unit SBERT vectors a mean square of
    2.6e-3, so raw inputs keep the reconstruction terms ≈ 1e-3 whatever the encoder does, and the
    matching MSE is met by collapsing every latent to one point. Standardised, reconstructing an
    input costs ~1 per dimension unless the latent keeps items apart. The statistics come from
    the frozen inputs and are recomputed when the model is built, so they are not saved."""

    def __init__(self, vectors: torch.Tensor):
        super().__init__()
        vectors = vectors.detach().float()
        self.register_buffer("mean", vectors.mean(0), persistent=False)
        self.register_buffer("std", vectors.std(0).clamp(min=1e-6), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)


class AutoEncoder(nn.Module):
    """``x → sigmoid(Linear(x))`` (the latent) ``→ Linear`` (the reconstruction): one side of the
    aligner, as in the paper (the reconstruction keeps the latent from collapsing). With a
    ``scale`` (:class:`Standardize`) it encodes and reconstructs the standardised input."""

    def __init__(self, dim: int, latent: int, scale: Standardize | None = None):
        super().__init__()
        self.encoder = nn.Linear(dim, latent)
        self.decoder = nn.Linear(latent, dim)
        self.scale = scale if scale is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(latent, reconstruction, the input the reconstruction is measured against)."""
        x = self.scale(x)
        latent = torch.sigmoid(self.encoder(x))
        return latent, self.decoder(latent), x


class ItemTextAligner(nn.Module):
    """Stage 1: the CF item embedding and the item's text vector each encoded into one latent
    space (``latent_size``, 128 in the paper) and decoded back; ``item_scale`` / ``text_scale``
    standardise each side's input (``align_inputs: standardized``; the official code reads them raw)."""

    def __init__(self, item_dim: int, text_dim: int, latent: int, item_scale: Standardize | None = None,
                 text_scale: Standardize | None = None):
        super().__init__()
        self.item = AutoEncoder(item_dim, latent, item_scale)
        self.text = AutoEncoder(text_dim, latent, text_scale)

    def item_scores(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Stage 1's own recommendation score (no LLM): the user representation against the
        decoded item embedding, ``mean(user · decoded)`` as the official code's logits."""
        return (user * self.item(items)[1]).mean(-1)

    def loss(self, user: torch.Tensor, pos: tuple[torch.Tensor, torch.Tensor], neg: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``pos``/``neg`` = (CF item embeddings, text vectors). Recommendation (the user
        representation against the decoded item embeddings, BCE), matching (latents, MSE),
        item and text reconstruction, weighted 1 / 1 / 0.5 / 0.2 as the paper's code."""
        total = 0.0
        for (item, text), label in ((pos, 1.0), (neg, 0.0)):
            item_latent, item_back, item_in = self.item(item)
            text_latent, text_back, text_in = self.text(text)
            logits = (user * item_back).mean(-1)
            total = total + F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))
            total = total + F.mse_loss(item_latent, text_latent)
            total = total + 0.5 * F.mse_loss(item_back, item_in) + 0.2 * F.mse_loss(text_back, text_in)
        return total


class SoftTokenProjector(nn.Module):
    """Stage 2: ``Linear → LayerNorm → LeakyReLU → Linear`` from the CF user representation, and
    ``Linear → LayerNorm → GELU → Linear`` from the joint item latent, into the LLM's hidden size.

    :meth:`users` / :meth:`items` rescale each soft token to ``norm`` (the mean norm of the LLM's
    token embeddings) when given: the projector's first outputs are ~5x longer than any token the
    frozen LLM was trained on, and only their direction then has to be learned."""

    def __init__(self, user_dim: int, latent: int, hidden: int, norm: float | None = None):
        super().__init__()
        self.norm = norm
        self.user = nn.Sequential(nn.Linear(user_dim, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden))
        self.item = nn.Sequential(nn.Linear(latent, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, hidden))
        for layer in (self.user[0], self.user[3], self.item[0], self.item[3]):
            nn.init.xavier_normal_(layer.weight)

    def _scaled(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.norm is None:
            return tokens
        return tokens * (self.norm / tokens.norm(dim=-1, keepdim=True).clamp(min=1e-6))

    def users(self, representation: torch.Tensor) -> torch.Tensor:
        return self._scaled(self.user(representation))

    def items(self, latent: torch.Tensor) -> torch.Tensor:
        return self._scaled(self.item(latent))
