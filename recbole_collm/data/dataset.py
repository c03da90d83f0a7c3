"""RecBole Dataset for labeled (user, item, label) data with the CoLLM paper's extras."""
from __future__ import annotations

import contextlib
import math
import os
from logging import getLogger

import numpy as np
import torch
from recbole.data.dataset import Dataset
from recbole.utils import FeatureSource, FeatureType, ModelType

from recbole_collm.data.history import PositiveHistory
from recbole_collm.errors import InputError, MissingInputError
from recbole_collm.protocol import implicit


def _is_number(value: str, required: bool) -> bool:
    """An atomic file's float value: a finite number, or empty where a value may be missing
    (RecBole fills it in; never a timestamp or a label, which order and teach)."""
    if not value.strip():
        return not required
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


class CollmDataset(Dataset):
    """Labeled interactions plus, computed once for every row before splitting:

    - ``item_id_list`` / ``item_length``: the user's last ``MAX_ITEM_LIST_LENGTH`` earlier
      positive items across all splits (RecBole's sequence field names, so SASRec/DIN read them);
    - ``item_titles``: item titles as text (prompt material, not a model feature);
    - ``train_user_count`` / ``train_item_count`` on the train split: interactions per user and
      per item in the whole train split (before ``train_rows_limit``), for warm/cold evaluation,
      popularity sampling and the capped full-sort catalogue.

    ``token_maps`` (``{field: [token, ...]}``, what a checkpoint stores): the user and item ids a
    saved model was trained with. RecBole numbers tokens by first appearance, so the same rows in
    another order would give every id another meaning; with the maps the ids are the saved ones,
    and a token the model never saw is refused.
    """

    def __init__(self, config, token_maps: dict | None = None):
        model_class = config.model_class if hasattr(config, "model_class") else None
        # the train rows the model learns from (recbole_collm.protocol): every labeled row, or the
        # liked ones for an implicit-feedback model; a next-item model's targets need an earlier item
        self._liked_train_rows = model_class is not None and implicit(model_class)
        self._sequential = model_class is not None and model_class.type == ModelType.SEQUENTIAL
        self._saved_token_maps = token_maps
        self._file_columns = {}  # atomic file name -> its header's column names (_check_atomic_files)
        super().__init__(config)

    def _download(self):
        # RecBole would try the network; say instead what is missing and where.
        names = self.config["benchmark_filename"]
        expected = (
            ", ".join(f"{self.dataset_name}.{n}.inter" for n in names)
            if names
            else f"{self.dataset_name}.inter"
        )
        raise MissingInputError(
            f"data_path: no folder {self.dataset_path} for dataset '{self.dataset_name}' "
            f"(expected {expected} there); set data_path to the folder holding it"
        )

    def _load_data(self, token, dataset_path):
        if os.path.isdir(dataset_path):
            self._check_atomic_files(token, dataset_path)
        super()._load_data(token, dataset_path)

    def _check_atomic_files(self, token: str, dataset_path: str) -> None:
        """Every file the settings need exists, has a header and a row, and has the columns
        ``load_col`` asks for (RecBole would skip a missing column silently)."""
        names = self.config["benchmark_filename"]
        inter_files = [f"{token}.{n}.inter" for n in names] if names else [f"{token}.inter"]
        load_col = self.config["load_col"] or {}
        needed = {name: load_col.get("inter") for name in inter_files}
        required = {self.config["TIME_FIELD"], self.config["LABEL_FIELD"]}
        for suffix in ("item", "user"):
            if load_col.get(suffix):
                needed[f"{token}.{suffix}"] = load_col[suffix]
        for name, columns in needed.items():
            path = os.path.join(dataset_path, name)
            if not os.path.isfile(path):
                raise MissingInputError(f"{path}: file not found (load_col / benchmark_filename ask for it)")
            separator = self.config["field_separator"]
            with open(path, encoding=self.config["encoding"]) as f:
                header = f.readline().rstrip("\n")
                if not header:
                    raise InputError(f"{path}: empty; expected a 'name:type' header line and at least one row")
                fields = self._header_fields(path, header.split(separator))
                loaded = columns or [name for name, _ in fields]
                self._file_columns[name] = [field for field, _ in fields]
                numeric = [(k, field) for k, (field, kind) in enumerate(fields) if kind == "float" and field in loaded]
                width, rows = len(fields) - 1, 0
                for number, line in enumerate(f, start=2):
                    if not line.strip():
                        continue
                    rows += 1
                    values = line.rstrip("\n").split(separator)
                    if len(values) - 1 != width:
                        # pandas would silently drop the extra field (e.g. a tab inside a title)
                        raise InputError(
                            f"{path}, line {number}: {len(values)} tab-separated fields, "
                            f"the header has {width + 1} (a tab inside a value?)"
                        )
                    for k, field in numeric:
                        if not _is_number(values[k], required=field in required):
                            raise InputError(f"{path}, line {number}, column '{field}': '{values[k]}' is not a finite number")
            if not rows:
                raise InputError(f"{path}: empty; expected a 'name:type' header line and at least one row")
            names = [name for name, _ in fields]
            for column in columns or []:
                if column not in names:
                    raise InputError(f"{path}: no '{column}' column (load_col asks for it); header has {names}")

    @staticmethod
    def _header_fields(path: str, header: list[str]) -> list[tuple[str, str]]:
        """``[(name, type), ...]`` of an atomic file's header; every column needs RecBole's
        ``name:type`` with a type RecBole knows."""
        kinds = ("token", "token_seq", "float", "float_seq")
        fields = []
        for column in header:
            name, _, kind = column.partition(":")
            if kind not in kinds:
                raise InputError(f"{path}: header column '{column}' must be name:type with type one of {', '.join(kinds)}")
            fields.append((name, kind))
        return fields

    def _remap_ID_all(self):
        super()._remap_ID_all()
        if self._saved_token_maps:
            for field, tokens in self._saved_token_maps.items():
                self._use_token_map(field, np.asarray(tokens, dtype=object))

    def _use_token_map(self, field: str, saved: np.ndarray) -> None:
        """Renumber ``field`` (and every feature of its alias) to the saved ids."""
        index = {token: i for i, token in enumerate(saved)}
        current = self.field2id_token[field]
        unknown = [t for t in current[1:] if t not in index]
        if unknown:
            raise InputError(
                f"{self.dataset_name}: {len(unknown)} {field} token(s) the checkpoint was not trained with "
                f"(e.g. '{unknown[0]}'); the data changed since it was saved — train again on it"
            )
        new_of_old = np.array([index[t] for t in current], dtype=np.int64)
        alias = next((fields for fields in self.alias.values() if field in fields), [field])
        for feat in (self.inter_feat, self.user_feat, self.item_feat):
            for name in alias:
                if feat is None or name not in feat:
                    continue
                if self.field2type[name] == FeatureType.TOKEN_SEQ:
                    feat[name] = [new_of_old[np.asarray(v, dtype=np.int64)] for v in feat[name]]
                else:
                    feat[name] = new_of_old[feat[name].to_numpy()]
        for name in alias:
            self.field2id_token[name] = saved
            self.field2token_id[name] = index

    def _data_processing(self):
        super()._data_processing()
        self._check_labels()
        self._warn_duplicates()
        self._extract_titles()
        self._build_history()

    def _check_labels(self) -> None:
        """Every row needs a 0/1 label: a silent wrong label is worse than an error."""
        field = self.label_field
        inter_columns = {c for name, columns in self._file_columns.items() if name.endswith(".inter") for c in columns}
        if field not in self.inter_feat and field in inter_columns:
            raise InputError(f"load_col: the .inter file has a '{field}' column but load_col.inter does not load it; "
                             f"add {field} to load_col.inter")
        if field not in self.inter_feat:
            raise InputError(
                f"{self.dataset_name}.inter: no '{field}' column; add a {field}:float column "
                f"with 0/1 values or set `threshold: {{rating: 4}}` to derive it"
            )
        values = self.inter_feat[field].to_numpy()
        bad = ~np.isin(values, (0, 1))
        if bad.any():
            examples = ", ".join(map(str, np.unique(values[bad])[:5]))
            raise InputError(
                f"{self.dataset_name}.inter: field '{field}' must be 0 or 1, found {examples}"
            )

    def _warn_duplicates(self) -> None:
        """Rows repeated with the same user, item and time count twice in training and
        evaluation: say how many (RecBole's ``rm_dup_inter`` drops them in a single-file dataset)."""
        keys = [f for f in (self.uid_field, self.iid_field, self.time_field) if f in self.inter_feat]
        count = int(self.inter_feat.duplicated(subset=keys).sum())
        if count:
            how = ("remove them from the split files" if self.config["benchmark_filename"]
                   else "set rm_dup_inter: first to keep one of each")
            getLogger().warning(f"{self.dataset_name}: {count} duplicate row(s) (same {', '.join(keys)}); "
                                f"each counts as a row of its own; {how}")

    def _extract_titles(self) -> None:
        """Keep titles as text indexed by internal item id and drop them from the features, so
        that ID-based models (MF, DIN, ...) do not silently use them."""
        field = self.config["title_field"]
        self.item_titles = None
        if not field or self.item_feat is None or field not in self.item_feat:
            return
        id2token = self.field2id_token[field]
        titles = [""] * self.item_num
        for item, value in zip(self.item_feat[self.iid_field], self.item_feat[field]):
            if self.field2type[field] == FeatureType.TOKEN_SEQ:
                titles[item] = " ".join(id2token[t] for t in value if t != 0)
            else:
                titles[item] = "" if value == 0 else str(id2token[value])
        self.item_titles = np.array(titles, dtype=object)
        self._del_col(self.item_feat, field)

    def _build_history(self) -> None:
        if self.time_field is None or self.time_field not in self.inter_feat:
            raise InputError(
                f"{self.dataset_name}.inter: TIME_FIELD '{self.time_field}' is required to order "
                "each user's history"
            )
        max_len = self.config["MAX_ITEM_LIST_LENGTH"]
        feat = self.inter_feat
        users, times = feat[self.uid_field].to_numpy(), feat[self.time_field].to_numpy(dtype=np.float64)
        # the exact times as read (float64), kept for pairs scored later from a checkpoint
        self.positive_history = PositiveHistory(users, feat[self.iid_field].to_numpy(), times, feat[self.label_field].to_numpy())
        history, length = self.positive_history(users, times, max_len)
        list_field = self.iid_field + self.config["LIST_SUFFIX"]
        length_field = self.config["ITEM_LIST_LENGTH_FIELD"]
        self.set_field_property(list_field, FeatureType.TOKEN_SEQ, FeatureSource.INTERACTION, max_len)
        self.set_field_property(length_field, FeatureType.TOKEN, FeatureSource.INTERACTION, 1)
        self.inter_feat[list_field] = list(history)
        self.inter_feat[length_field] = length
        # their vocabularies, as for any token field: RecBole's context-aware models embed every
        # token field (the history as a bag of items, its length as a token) and ask each its size
        self.field2id_token[list_field] = self.field2id_token[self.iid_field]
        self.field2token_id[list_field] = self.field2token_id[self.iid_field]
        self.field2id_token[length_field] = np.arange(max_len + 1).astype(str).astype(object)
        self.field2token_id[length_field] = {token: i for i, token in enumerate(self.field2id_token[length_field])}

    def build(self):
        datasets = super().build()
        train = datasets[0].inter_feat  # warm/cold are defined by the whole train split
        # each split's (user, item) rows before any row limit: what a full-sort query at a later
        # split masks as items the user already has (RecBole's rule for its full-sort evaluation)
        self.split_pairs = [(d.inter_feat[self.uid_field].numpy(), d.inter_feat[self.iid_field].numpy()) for d in datasets]
        datasets = self._limit_rows(self._protocol_rows(datasets))
        for dataset in datasets[1:]:
            # metrics do not depend on row order; a user's rows side by side share their prompt
            # prefix inside one eval batch (the LLM models' prefix cache)
            dataset.sort(by=[self.uid_field, self.time_field])
        # the train split's own record of the rows it was cut from (before train_rows_limit): what
        # warm/cold, popularity sampling and the capped catalogue count
        datasets[0].train_user_count = np.bincount(train[self.uid_field].numpy(), minlength=self.user_num)
        datasets[0].train_item_count = np.bincount(train[self.iid_field].numpy(), minlength=self.item_num)
        return datasets

    def _protocol_rows(self, datasets: list) -> list:
        """The train rows an implicit-feedback model learns from: the liked ones (a sequential
        one's need an earlier liked item: RecBole's next-item targets always have one). A
        RecBole sequential model reads an empty history as the all-padding sequence at position 0
        (length 1; RecBole's models index the last real position), as the plugin's SASRecCTR does."""
        out = list(datasets)
        length_field = self.config["ITEM_LIST_LENGTH_FIELD"]
        if self._liked_train_rows:
            feat = out[0].inter_feat
            keep = feat[self.label_field] > 0.5
            if self._sequential:
                keep &= feat[length_field] > 0
            out[0] = out[0].copy(feat[keep])
        if self._sequential:
            for split in out:
                split.inter_feat[length_field] = split.inter_feat[length_field].clamp(min=1)
        return out

    def _limit_rows(self, datasets: list) -> list:
        """CPU budgets: ``train_rows_limit`` keeps the most recent train rows (by time;
        ``train_rows_sample: random``: a seeded random sample, in time order), ``eval_rows_limit``
        a seeded random sample of valid and test rows. Histories and train counts are unaffected
        (computed on all rows)."""
        train_limit, eval_limit = self.config["train_rows_limit"], self.config["eval_rows_limit"]
        how = self.config["train_rows_sample"] or "recent"
        out = list(datasets)
        if train_limit and len(out[0]) > train_limit:
            if how == "recent":
                order = torch.argsort(out[0].inter_feat[self.time_field], stable=True)
                keep = order[-train_limit:]
            else:  # a generator of its own: the eval sample below stays the same either way
                generator = torch.Generator().manual_seed(int(self.config["seed"]) + 1)
                keep = torch.randperm(len(out[0]), generator=generator)[:train_limit].sort().values
            out[0] = out[0].copy(out[0].inter_feat[keep])
        if eval_limit:
            generator = torch.Generator().manual_seed(int(self.config["seed"]))
            per_user = self.config["eval_rows_sample"] == "users"
            for k in (1, 2):
                if len(out[k]) > eval_limit:
                    feat = out[k].inter_feat
                    keep = (self._user_sample(feat, eval_limit, generator) if per_user
                            else torch.randperm(len(feat), generator=generator)[:eval_limit].sort().values)
                    out[k] = out[k].copy(feat[keep])
        return out

    def _user_sample(self, feat, limit: int, generator: torch.Generator, per_user: int = 3) -> torch.Tensor:
        """``eval_rows_sample: users``: seeded users that have both labels in the split, ``per_user``
        rows each (one liked, one disliked, the rest drawn from their other rows), until ``limit``
        rows: UAUC then covers ~``limit / per_user`` users, where a random sample of rows leaves
        most users with one row or one label (300 ml-100k test rows: 21 users with both)."""
        users, labels = feat[self.uid_field], feat[self.label_field] > 0.5
        order = torch.randperm(len(feat), generator=generator)  # one seeded shuffle decides every draw
        rows_of: dict[int, list[int]] = {}
        for row in order.tolist():
            rows_of.setdefault(int(users[row]), []).append(row)
        keep: list[int] = []
        for user in torch.randperm(int(users.max()) + 1, generator=generator).tolist():
            rows = rows_of.get(user, [])
            liked = [r for r in rows if labels[r]]
            disliked = [r for r in rows if not labels[r]]
            if not liked or not disliked:
                continue
            first = [liked[0], disliked[0]]
            chosen = first + [r for r in rows if r not in first][: per_user - 2]
            keep += chosen[: limit - len(keep)]
            if len(keep) >= limit:
                break
        return torch.tensor(sorted(keep), dtype=torch.long)

    @contextlib.contextmanager
    def _liked_rows(self):
        """``inter_feat`` holds the liked rows only while the block runs: what a model reads as
        interactions (a dislike is a labeled row, not an interaction)."""
        feat = self.inter_feat
        positive = feat[self.label_field] > 0.5
        self.inter_feat = feat[positive] if isinstance(positive, torch.Tensor) else feat[positive.to_numpy()]
        try:
            yield
        finally:
            self.inter_feat = feat

    def inter_matrix(self, form: str = "coo", value_field: str | None = None):
        """RecBole's user × item matrix over the liked rows only (the paper builds LightGCN's graph
        so; EASE, MultiVAE, ItemKNN and every other matrix reader read the same)."""
        with self._liked_rows():
            return super().inter_matrix(form, value_field)

    def _history_matrix(self, row, value_field=None, max_history_len=None):
        """RecBole's per-user / per-item history over the liked rows only (as :meth:`inter_matrix`)."""
        with self._liked_rows():
            return super()._history_matrix(row, value_field, max_history_len)

    def __str__(self) -> str:
        text = super().__str__()
        if getattr(self, "item_titles", None) is not None:
            text += f"\nItem titles: {sum(bool(t) for t in self.item_titles)} of {self.item_num}"
        return text

