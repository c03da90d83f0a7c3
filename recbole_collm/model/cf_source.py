"""Where the collaborative vectors come from: a trained checkpoint (the plugin's MF / LightGCNCTR /
SASRecCTR / DINCTR, or RecBole's own BPR / LightGCN / SASRec / DIN), aligned to this dataset's ids
by token, or an MF table trained from scratch inside CoLLM (T2)."""
from __future__ import annotations

from logging import getLogger
from typing import Callable, Protocol

import numpy as np
import torch
from recbole.data.interaction import Interaction
from torch import nn

from recbole_collm.errors import InputError

NOT_HANDED = ("{model} reads its collaborative model from cf_checkpoint: build it with "
              "recbole_collm.build_model(config, dataset), which restores and aligns the checkpoint "
              "(or pass source=CheckpointSource(...))")


class CollaborativeModel(Protocol):
    """What a trained collaborative model offers the LLM models (:class:`CheckpointSource`). The
    plugin's MF, LightGCNCTR, SASRecCTR and DINCTR implement it; RecBole's own BPR, LightGCN, SASRec
    and DIN are read through :class:`RecBoleVectors`. Sequence models also have
    ``max_seq_length`` (RecBole's), and a model whose user vector depends on the target item says
    ``user_depends_on_target = True``."""

    vector_dim: int

    def user_item_vectors(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        """The user's and the item's vectors for each row, as the model computes them to score it."""

    def item_embedding(self, items: torch.Tensor) -> torch.Tensor:
        """The model's own item embedding (A-LLMRec aligns it with the titles)."""

    def predict(self, interaction) -> torch.Tensor:
        """The model's score for each row."""


def _bpr_vectors(model, interaction) -> tuple[torch.Tensor, torch.Tensor]:
    return model.user_embedding(interaction[model.USER_ID]), model.item_embedding(interaction[model.ITEM_ID])


def _lightgcn_vectors(model, interaction) -> tuple[torch.Tensor, torch.Tensor]:
    users, items = model.forward()  # the propagated embeddings its scores are dot products of
    return users[interaction[model.USER_ID]], items[interaction[model.ITEM_ID]]


def _sasrec_vectors(model, interaction) -> tuple[torch.Tensor, torch.Tensor]:
    user = model.forward(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
    return user, model.item_embedding(interaction[model.ITEM_ID])


def _din_vectors(model, interaction) -> tuple[torch.Tensor, torch.Tensor]:
    """The input of DIN's prediction MLP, ``[pooled history, target, pooled · target]`` (it
    depends on the target), and the target's embedding repeated to that width: the slots the
    plugin's DINCTR fills, read from RecBole's own forward pass."""
    seen = []
    hook = model.dnn_mlp_layers.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        model.forward(interaction[model.USER_ID], interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN],
                      interaction[model.POS_ITEM_ID])
    finally:
        hook.remove()
    user = seen[0]
    width = user.shape[-1] // 3
    return user, user[:, width:2 * width].repeat(1, 3)


# RecBole's class name -> (its vectors, their width)
RECBOLE_READERS: dict[str, tuple[Callable, Callable[[nn.Module], int]]] = {
    "BPR": (_bpr_vectors, lambda m: m.embedding_size),
    "LightGCN": (_lightgcn_vectors, lambda m: m.latent_dim),
    "SASRec": (_sasrec_vectors, lambda m: m.hidden_size),
    "DIN": (_din_vectors, lambda m: m.dnn_list[0]),
}


class RecBoleVectors(nn.Module):
    """A model RecBole trained (BPR, LightGCN, SASRec, DIN from ``run_recbole``, or through the
    plugin's runner), offering :class:`CollaborativeModel`: its vectors read the way it computes
    its own scores. A sequence model reads an empty history as RecBole's models can, the
    all-padding sequence at position 0 (length 1)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        name = type(model).__name__
        if name not in RECBOLE_READERS:
            raise InputError(f"cf_checkpoint: a RecBole {name} checkpoint; the collaborative slots read one of "
                             f"{', '.join(RECBOLE_READERS)} (RecBole's) or the plugin's MF, LightGCNCTR, SASRecCTR, DINCTR")
        self.model = model
        self._vectors, width = RECBOLE_READERS[name]
        self.vector_dim = int(width(model))
        self.max_seq_length = getattr(model, "max_seq_length", None)
        self.user_depends_on_target = name == "DIN"

    def _readable(self, interaction) -> Interaction:
        if self.max_seq_length is None:
            return interaction
        length = self.model.ITEM_SEQ_LEN
        return Interaction({**interaction.interaction, length: interaction[length].clamp(min=1)})

    def user_item_vectors(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        return self._vectors(self.model, self._readable(interaction))

    def predict(self, interaction) -> torch.Tensor:
        return self.model.predict(self._readable(interaction))

    def item_embedding(self, items: torch.Tensor) -> torch.Tensor:
        return self.model.item_embedding(items)


def collaborative_model(model: nn.Module) -> nn.Module:
    """``model`` as a :class:`CollaborativeModel`: the plugin's models are one; RecBole's are read
    through :class:`RecBoleVectors`."""
    return model if hasattr(model, "user_item_vectors") else RecBoleVectors(model)


def token_map(source_tokens: np.ndarray, target_tokens: np.ndarray) -> tuple[torch.Tensor, float]:
    """Map from internal ids of one dataset to another's, by token; unknown tokens map to 0.

    Returns the map (indexed by source id; id 0 = padding maps to 0) and the share of the
    source's real tokens (ids ≥ 1) found in the target.
    """
    index = {tok: i for i, tok in enumerate(target_tokens) if i > 0}
    mapped = np.array([index.get(tok, 0) if i > 0 else 0 for i, tok in enumerate(source_tokens)], dtype=np.int64)
    coverage = float((mapped[1:] > 0).mean()) if len(mapped) > 1 else 0.0
    return torch.from_numpy(mapped), coverage


class CheckpointSource(nn.Module):
    """User/item vectors from a trained MF, LightGCN, SASRec or DIN (``model``, built on its own
    dataset ``cf_dataset``, so its id maps are its own); ids are aligned to ``dataset``'s by
    token. The runner restores the checkpoint and builds the source
    (:func:`recbole_collm.restore.collaborative_source`); a model is handed it ready. Users/items
    unknown to the checkpoint get the zero vector (documented choice: the MLP then maps them to
    its bias, the same vector for every unknown id). Frozen and in eval mode unless
    :meth:`set_tuned` (CoLLM's ``tune_cf_model``, variant T1).
    """

    def __init__(
        self, model: nn.Module, cf_dataset, dataset, origin: str, min_overlap: float = 0.5,
        history_length: int | None = None, other_dataset: bool = False,
    ):
        super().__init__()
        cf_config = cf_dataset.config
        name = cf_config["model"]
        if cf_dataset.dataset_name != dataset.dataset_name and not other_dataset:
            # numeric tokens of unrelated datasets collide (ml-100k's users are ml-1m's too)
            raise InputError(f"cf_checkpoint: {origin} was trained on '{cf_dataset.dataset_name}', this run is on "
                             f"'{dataset.dataset_name}'; set cf_other_dataset: True to read it all the same")
        self.model = collaborative_model(model)
        self.set_tuned(False)
        self.name, self.dim = name, self.model.vector_dim
        # sequence models read the most recent ``history_length`` (cf_history_length) history
        # items, at most their own sequence length, in a batch as wide as that length
        self.sequence_width = getattr(self.model, "max_seq_length", None)
        self.history_length = min(self.sequence_width, history_length or self.sequence_width) if self.sequence_width else None
        carried = dataset.config["MAX_ITEM_LIST_LENGTH"]
        if self.history_length and carried < self.history_length:
            raise InputError(
                f"MAX_ITEM_LIST_LENGTH: {carried}, but the {name} source reads {self.history_length} history items "
                f"(cf_history_length); raise MAX_ITEM_LIST_LENGTH or lower cf_history_length"
            )
        self.cf_uid, self.cf_iid = cf_dataset.uid_field, cf_dataset.iid_field
        maps = {}
        for field, cf_field in ((dataset.uid_field, self.cf_uid), (dataset.iid_field, self.cf_iid)):
            maps[field], coverage = token_map(dataset.field2id_token[field], cf_dataset.field2id_token[cf_field])
            _, reverse = token_map(cf_dataset.field2id_token[cf_field], dataset.field2id_token[field])
            getLogger().info(
                f"cf_checkpoint: {coverage:.1%} of {dataset.dataset_name}'s {field}s found in {origin}, "
                f"{reverse:.1%} of its {cf_field}s in {dataset.dataset_name}"
            )
            # both directions: numeric ids of unrelated datasets overlap one way easily
            if min(coverage, reverse) < min_overlap:
                raise InputError(
                    f"cf_checkpoint: {origin} was trained on '{cf_dataset.dataset_name}'; {field} tokens overlap "
                    f"{coverage:.1%} / {reverse:.1%} with {dataset.dataset_name} (cf_min_overlap: {min_overlap})"
                )
        self.register_buffer("user_map", maps[dataset.uid_field], persistent=False)
        self.register_buffer("item_map", maps[dataset.iid_field], persistent=False)
        self.uid, self.iid = dataset.uid_field, dataset.iid_field
        self.list_field = dataset.iid_field + cf_config["LIST_SUFFIX"]
        self.length_field = cf_config["ITEM_LIST_LENGTH_FIELD"]

    def set_tuned(self, tuned: bool) -> None:
        """Whether the CF model's own weights train with the model that reads it (frozen by
        default: the paper's CoLLM and A-LLMRec)."""
        self.trainable = tuned
        self.model.requires_grad_(tuned)
        self.train(self.training)  # a frozen model starts (and stays) in eval mode

    @property
    def user_depends_on_target(self) -> bool:
        """Whether the user vector changes with the target item (DIN's does: its user slot holds
        the target embedding and the target-attention pooled history). Asked of the model."""
        return bool(getattr(self.model, "user_depends_on_target", False))

    def train(self, mode: bool = True):
        """A frozen CF model stays in eval mode whatever the trainer asks (the official code pins
        it so): its dropout and batch statistics must give the same vectors in training and in
        evaluation. A tuned one (``tune_cf_model``, T1) follows the trainer."""
        super().train(mode)
        if not self.trainable:
            self.model.eval()
        return self

    def translate(self, interaction) -> Interaction:
        """The batch in the checkpoint's id space; unknown history items are dropped, and the
        most recent ``history_length`` known items kept (oldest first, right-padded)."""
        users = self.user_map[interaction[self.uid]]
        items = self.item_map[interaction[self.iid]]
        fields = {self.cf_uid: users, self.cf_iid: items}
        if self.history_length and self.list_field in interaction:
            history = self.item_map[interaction[self.list_field]]
            known = history > 0
            order = torch.argsort((~known).to(torch.int8), dim=1, stable=True)  # known first, in order
            history = torch.gather(history, 1, order)
            count = known.sum(1)
            keep = count.clamp(max=self.history_length)
            offsets = torch.arange(self.sequence_width, device=history.device)
            index = (count - keep).unsqueeze(1) + offsets  # the last `keep` known items
            index = index.clamp(max=history.shape[1] - 1)
            cropped = torch.gather(history, 1, index) * (offsets < keep.unsqueeze(1))
            fields[self.cf_iid + "_list"] = cropped
            fields[self.length_field] = keep
        return Interaction(fields)

    def predict(self, interaction) -> torch.Tensor:
        """The CF model's own score for the rows (in this dataset's ids): what CoLLM is compared
        with on the same test rows."""
        return self.model.predict(self.translate(interaction))

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """The checkpoint's own embedding of ``items`` (this dataset's ids; unknown ones: zero),
        any shape: what A-LLMRec aligns with the titles."""
        mapped = self.item_map[items]
        return self.model.item_embedding(mapped) * (mapped > 0).unsqueeze(-1)

    def forward(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        translated = self.translate(interaction)
        user, item = self.model.user_item_vectors(translated)
        user = user * (translated[self.cf_uid] > 0).unsqueeze(-1)
        item = item * (translated[self.cf_iid] > 0).unsqueeze(-1)
        return user, item


class ScratchMFSource(nn.Module):
    """An MF embedding table trained from scratch inside CoLLM (variant T2)."""

    def __init__(self, dataset, dim: int):
        super().__init__()
        self.uid, self.iid, self.dim, self.name = dataset.uid_field, dataset.iid_field, dim, "MF"
        self.user = nn.Embedding(dataset.user_num, dim)
        self.item = nn.Embedding(dataset.item_num, dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)

    def forward(self, interaction) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user(interaction[self.uid]), self.item(interaction[self.iid])
