"""RecBole's Evaluator plus the same metrics on the warm and cold subsets."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
from recbole.evaluator.evaluator import Evaluator

from recbole_collm.evaluator.collector import take_rows
from recbole_collm.evaluator.subsets import warm_cold_masks


class CollmEvaluator(Evaluator):
    """After the overall metrics, reports ``warm_<metric>``/``cold_<metric>`` and the subset
    sizes ``warm_rows``/``cold_rows`` when train counts were given (``eval_subsets: True``)."""

    def __init__(self, config):
        super().__init__(config)
        self.train_user_count = None
        self.train_item_count = None

    def set_train_counts(self, user_count: np.ndarray | None, item_count: np.ndarray | None) -> None:
        self.train_user_count, self.train_item_count = user_count, item_count

    last_rows: dict | None = None  # the last labeled evaluation's rows: uid, iid, label, score

    def evaluate(self, dataobject):
        result = super().evaluate(dataobject)
        if "data.uid" in dataobject and "rec.score" in dataobject:
            self.last_rows = {
                "uid": dataobject["data.uid"].numpy(),
                "iid": dataobject["data.iid"].numpy(),
                "label": dataobject["data.label"].numpy(),
                "score": dataobject["rec.score"].float().numpy(),
            }
        if (
            not self.config["eval_subsets"]
            or self.train_user_count is None
            or "data.uid" not in dataobject
        ):
            return result
        masks = warm_cold_masks(
            dataobject["data.uid"].numpy(),
            dataobject["data.iid"].numpy(),
            self.train_user_count,
            self.train_item_count,
            self.config["warm_threshold"],
            self.config["cold_threshold"],
        )
        subset_result = OrderedDict()
        for name, mask in masks.items():
            subset_result[f"{name}_rows"] = int(mask.sum())
            if not mask.any():
                continue
            subset = take_rows(dataobject, torch.from_numpy(mask))
            for metric in self.metrics:
                for key, value in self._safe_metric(metric, subset).items():
                    subset_result[f"{name}_{key}"] = value
        result.update(subset_result)
        return result

    def _safe_metric(self, metric: str, subset) -> dict:
        """A metric on a small subset may be undefined (one class only): report NaN, not crash."""
        try:
            return self.metric_class[metric].calculate_metric(subset)
        except (ValueError, ZeroDivisionError):
            return {metric: math.nan}
