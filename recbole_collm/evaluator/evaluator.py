"""RecBole's Evaluator plus the same metrics on the warm and cold subsets, and the scored rows."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
from recbole.evaluator.collector import DataStruct
from recbole.evaluator.evaluator import Evaluator

from recbole_collm.evaluator.collector import COUNT_KEYS, take_rows
from recbole_collm.evaluator.subsets import warm_cold_masks


class EvaluationResult(OrderedDict):
    """RecBole's result dict (metric → value) with the scored rows beside it: ``rows`` = uid, iid,
    label, score arrays of a labeled evaluation (what ensembles and per-row comparisons need);
    ``first_hit`` of a ranking evaluation = each query's place (0-based) of its first relevant
    item among the top max(topk), −1 when none is there (what per-query comparisons need: Hit@K
    of a query is ``0 <= first_hit < K``). Pickled (into checkpoints) as a plain OrderedDict: the
    metrics, not the rows."""

    rows: dict | None = None
    first_hit = None
    gathered = False  # computed on every process's rows (several processes)

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
        gathered = "data.row_index" in dataobject and "data.uid" in dataobject
        if gathered:
            dataobject = gather_rows(dataobject)
        result = EvaluationResult(super().evaluate(dataobject))
        result.gathered = gathered
        if "rec.topk" in dataobject:
            hits = dataobject["rec.topk"][:, :-1].bool().numpy()  # the last column: the query's relevant count
            result.first_hit = np.where(hits.any(1), hits.argmax(1), -1)
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
                # one row: RecBole's metrics squeeze it to a scalar and fail; no metric is defined on it
                values = self._safe_metric(metric, subset) if mask.sum() > 1 else {metric: math.nan}
                for key, value in values.items():
                    result[f"{name}_{key}"] = value
        return result

    def _safe_metric(self, metric: str, subset) -> dict:
        """A metric on a small subset may be undefined (one class only): report NaN, not crash."""
        try:
            return self.metric_class[metric].calculate_metric(subset)
        except (ValueError, ZeroDivisionError):
            return {metric: math.nan}


def gather_rows(struct):
    """Every process's labeled rows (DDP), each dataset row once, in dataset order: the shards are
    gathered by their ``data.row_index`` and the sampler's padding repeats dropped."""
    keys = ("rec.score", "data.label", "data.uid", "data.iid")
    mine = {k: struct[k].cpu() for k in (*keys, "data.row_index")}
    shards = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(shards, mine)
    index = torch.cat([s["data.row_index"] for s in shards]).numpy()
    _, first = np.unique(index, return_index=True)  # sorted by row index, repeats dropped
    order = torch.from_numpy(first)
    out = DataStruct()
    for key in keys:
        out.set(key, torch.cat([s[key] for s in shards])[order])
    for key in COUNT_KEYS:
        if key in struct:
            out.set(key, struct[key])
    return out
