"""RecBole's Evaluator plus the same metrics on the warm and cold subsets, and the scored rows."""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from recbole.evaluator.evaluator import Evaluator

from recbole_collm.evaluator.collector import COUNT_KEYS, take_rows
from recbole_collm.evaluator.subsets import warm_cold_masks


class EvaluationResult(OrderedDict):
    """RecBole's result dict (metric → value) with the scored rows beside it: ``rows`` = uid, iid,
    label, score arrays of a labeled evaluation (what ensembles and per-row comparisons need).
    Pickled (into checkpoints) as a plain OrderedDict: the metrics, not the rows."""

    rows: dict | None = None

    def __reduce__(self):
        return OrderedDict, (list(self.items()),)


class CollmEvaluator(Evaluator):
    """After the overall metrics, reports ``warm_<metric>``/``cold_<metric>`` and the subset
    sizes ``warm_rows``/``cold_rows`` (``eval_subsets: True``) when the struct holds the train
    counts (collected from the train data by ``CollmCollector.data_collect``)."""

    def __init__(self, config):
        super().__init__(config)
        self.subsets = bool(config["eval_subsets"])
        self.thresholds = (config["warm_threshold"], config["cold_threshold"])

    def evaluate(self, dataobject) -> EvaluationResult:
        result = EvaluationResult(super().evaluate(dataobject))
        labeled = "data.uid" in dataobject and "rec.score" in dataobject
        if labeled:
            result.rows = {
                "uid": dataobject["data.uid"].numpy(),
                "iid": dataobject["data.iid"].numpy(),
                "label": dataobject["data.label"].numpy(),
                "score": dataobject["rec.score"].float().numpy(),
            }
        if not (labeled and self.subsets and all(k in dataobject for k in COUNT_KEYS)):
            return result
        masks = warm_cold_masks(
            dataobject["data.uid"].numpy(),
            dataobject["data.iid"].numpy(),
            *(dataobject[k].numpy() for k in COUNT_KEYS),
            *self.thresholds,
        )
        for name, mask in masks.items():
            result[f"{name}_rows"] = int(mask.sum())
            if not mask.any():
                continue
            subset = take_rows(dataobject, torch.from_numpy(mask))
            for metric in self.metrics:
                for key, value in self._safe_metric(metric, subset).items():
                    result[f"{name}_{key}"] = value
        return result

    def _safe_metric(self, metric: str, subset) -> dict:
        """A metric on a small subset may be undefined (one class only): report NaN, not crash."""
        try:
            return self.metric_class[metric].calculate_metric(subset)
        except (ValueError, ZeroDivisionError):
            return {metric: math.nan}
