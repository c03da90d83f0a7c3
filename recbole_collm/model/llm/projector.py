"""What fills the two ID slots of a prompt in the LLM's embedding space: the CIE (collaborative
vectors through an MLP, the paper's projector), one trainable row per user and item (the
UI-token ablation), or two trainable vectors shared by every row (Prompt4NR's continuous prompt)."""
from __future__ import annotations

import torch
from torch import nn

from recbole_collm.model.cf_source import ScratchMFSource


class CollaborativeEncoder(nn.Module):
    """source vectors → ``Linear(d, factor·d) → ReLU → Linear(factor·d, llm_hidden)``, shared by
    the user and the item vector (the paper's CIE), initialised as the official code (PyTorch's
    default): a zero-initialised last layer (one blank vector in every slot at the first step)
    scored no closer to the LoRA stage and learned slower (docs/models.md, "The text half"); the
    run keeps the LoRA stage's weights when they validate better (LLMTrainer)."""

    def __init__(self, source: nn.Module, llm_hidden: int, factor: int = 10):
        super().__init__()
        self.source = source
        self.mlp = nn.Sequential(nn.Linear(source.dim, factor * source.dim), nn.ReLU(), nn.Linear(factor * source.dim, llm_hidden))

    @property
    def user_depends_on_target(self) -> bool:
        """Whether the user slot changes with the target (decides if rows of one user may share
        a prefix through <UserID>); the source knows, its name does not matter."""
        return bool(getattr(self.source, "user_depends_on_target", False))

    def set_trainable(self, tune_source: bool) -> None:
        """The MLP trains; the source too when it is trained from scratch (T2) or asked (T1)."""
        self.mlp.requires_grad_(True)
        if isinstance(self.source, ScratchMFSource) or tune_source:
            self.source.requires_grad_(True)

    def forward(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        user, item = self.source(interaction)
        return self.mlp(user), self.mlp(item)


class IDTokenEmbedding(nn.Module):
    """One trainable LLM-space embedding row per user and per item: the same as adding ID tokens
    to the tokenizer with new input-embedding rows (only the two slots ever read them, and the
    answer head never emits them), without growing the vocabulary or the LM head. The paper's
    "w/ UI-token" ablation (CLLM4Rec-style IDs)."""

    def __init__(self, dataset, hidden: int, init_std: float):
        super().__init__()
        self.uid, self.iid = dataset.uid_field, dataset.iid_field
        self.user = nn.Embedding(dataset.user_num, hidden)
        self.item = nn.Embedding(dataset.item_num, hidden)
        nn.init.normal_(self.user.weight, std=init_std)  # the scale of the LLM's own token rows
        nn.init.normal_(self.item.weight, std=init_std)

    user_depends_on_target = False

    def set_trainable(self, tune_source: bool) -> None:
        self.requires_grad_(True)

    def forward(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user(interaction[self.uid]), self.item(interaction[self.iid])


class ContinuousPrompt(nn.Module):
    """Two trainable vectors, the same for every row: Prompt4NR's continuous prompt tokens in the
    template's two slots (no user or item identity reaches the LLM through them). Initialised at
    the scale of the LLM's own token rows, as the ID tokens."""

    user_depends_on_target = False

    def __init__(self, hidden: int, init_std: float):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(2, hidden) * init_std)

    def set_trainable(self, tune_source: bool) -> None:
        self.requires_grad_(True)

    def forward(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        rows = len(interaction)
        return self.tokens[0].expand(rows, -1), self.tokens[1].expand(rows, -1)
