"""RecBole Dataset for labeled (user, item, label) data with the CoLLM paper's extras."""
from __future__ import annotations

import os

import numpy as np
import torch
from recbole.data.dataset import Dataset
from recbole.utils import FeatureSource, FeatureType

from recbole_collm.data.history import PositiveHistory
from recbole_collm.errors import InputError, MissingInputError


class CollmDataset(Dataset):
    """Labeled interactions plus, computed once for every row before splitting:

    - ``item_id_list`` / ``item_length``: the user's last ``MAX_ITEM_LIST_LENGTH`` earlier
      positive items across all splits (RecBole's sequence field names, so SASRec/DIN read them);
    - ``item_titles``: item titles as text (prompt material, not a model feature);
    - ``train_user_count`` / ``train_item_count`` on the train split: interactions per user and
      per item in the whole train split (before ``train_rows_limit``), for warm/cold evaluation,
      popularity sampling and the capped full-sort catalogue.
    """

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
                width, rows = header.count(separator), 0
                for number, line in enumerate(f, start=2):
                    if not line.strip():
                        continue
                    rows += 1
                    if line.rstrip("\n").count(separator) != width:
                        # pandas would silently drop the extra field (e.g. a tab inside a title)
                        raise InputError(
                            f"{path}, line {number}: {line.count(separator) + 1} tab-separated fields, "
                            f"the header has {width + 1} (a tab inside a value?)"
                        )
            if not header or not rows:
                raise InputError(f"{path}: empty; expected a 'name:type' header line and at least one row")
            fields = [h.split(":")[0] for h in header.split(self.config["field_separator"])]
            for column in columns or []:
                if column not in fields:
                    raise InputError(f"{path}: no '{column}' column (load_col asks for it); header has {fields}")

    def _data_processing(self):
        super()._data_processing()
        self._check_labels()
        self._extract_titles()
        self._build_history()

    def _check_labels(self) -> None:
        """Every row needs a 0/1 label: a silent wrong label is worse than an error."""
        field = self.label_field
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

    def build(self):
        datasets = super().build()
        train = datasets[0].inter_feat  # warm/cold are defined by the whole train split
        datasets = self._limit_rows(datasets)
        for dataset in datasets[1:]:
            # metrics do not depend on row order; a user's rows side by side share their prompt
            # prefix inside one eval batch (the LLM models' prefix cache)
            dataset.sort(by=[self.uid_field, self.time_field])
        # the train split's own record of the rows it was cut from (before train_rows_limit): what
        # warm/cold, popularity sampling and the capped catalogue count
        datasets[0].train_user_count = np.bincount(train[self.uid_field].numpy(), minlength=self.user_num)
        datasets[0].train_item_count = np.bincount(train[self.iid_field].numpy(), minlength=self.item_num)
        return datasets

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
            for k in (1, 2):
                if len(out[k]) > eval_limit:
                    keep = torch.randperm(len(out[k]), generator=generator)[:eval_limit].sort().values
                    out[k] = out[k].copy(out[k].inter_feat[keep])
        return out

    def positive_inter_matrix(self, form: str = "coo"):
        """User × item matrix of the positive rows only (the paper builds LightGCN's graph so)."""
        feat = self.inter_feat
        positive = feat[self.label_field] > 0.5
        if isinstance(positive, torch.Tensor):
            feat = feat[positive]
        else:
            feat = feat[positive.to_numpy()]
        return self._create_sparse_matrix(feat, self.uid_field, self.iid_field, form, None)

    def __str__(self) -> str:
        text = super().__str__()
        if getattr(self, "item_titles", None) is not None:
            text += f"\nItem titles: {sum(bool(t) for t in self.item_titles)} of {self.item_num}"
        return text

