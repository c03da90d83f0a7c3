"""benchmarks/report.py: what its tables say about the runs behind them."""
import numpy as np
import pytest

from benchmarks.report import llm_train_rows, versus_anchor
from recbole_collm.evaluator.compare import paired_bootstrap


def record(group: str, model: str, rows: int | None, sample: str = "random") -> dict:
    return {"group": group, "model": model, "train_rows_limit": rows, "train_rows_sample": sample}


def test_each_llm_run_is_reported_with_its_own_train_rows():
    records = {"MF": record("Collaborative", "MF", None), "ICL": record("LLM", "ICL", 400),
               "TALLRec": record("LLM", "TALLRec", 200), "CoLLM-MF": record("LLM", "CoLLM", 400),
               "CoLLM-DIN": record("LLM", "CoLLM", 400), "T3 (one step)": record("Ablation", "CoLLM", 400)}
    assert llm_train_rows(records) == "LLM train rows: TALLRec 200, every other LLM run 400 (seeded random sample)"
    records["TALLRec"]["train_rows_limit"] = 400
    assert llm_train_rows(records) == "LLM train rows: every LLM run 400 (seeded random sample)"
    records["CoLLM-MF"] = record("LLM", "CoLLM", None, "recent")
    assert llm_train_rows(records) == ("LLM train rows: CoLLM-MF all, every other LLM run 400 "
                                       "(seeded random sample; most recent)")


def scored(scores: list[float]) -> dict:
    return {"test_rows": {"user": [1, 1, 1, 2, 2, 2], "item": [1, 2, 3, 1, 2, 3], "label": [1, 0, 1, 0, 1, 0],
                          "score": scores}}


def test_every_row_is_compared_with_collm_mf_on_the_same_rows():
    collm, mf = [0.9, 0.1, 0.8, 0.2, 0.7, 0.3], [0.2, 0.9, 0.1, 0.8, 0.3, 0.7]
    records = {"CoLLM-MF": scored(collm), "MF": scored(mf)}
    rows = records["MF"]["test_rows"]
    c = paired_bootstrap(np.asarray(rows["user"]), np.asarray(rows["label"]), np.asarray(mf), np.asarray(collm), "auc")
    assert c.difference == -1.0
    assert versus_anchor(records, "MF", "auc") == f"-1.0000 [{c.low:+.4f}, {c.high:+.4f}]"
    assert versus_anchor(records, "CoLLM-MF", "auc") == ""
    assert versus_anchor(records, "TALLRec", "auc") == ""
    records["TALLRec"] = scored(collm)
    assert versus_anchor(records, "TALLRec", "auc") == "+0.0000 [+0.0000, +0.0000] n.s."
    records["TALLRec"]["test_rows"]["item"] = [3, 2, 1, 1, 2, 3]
    with pytest.raises(ValueError, match="TALLRec and CoLLM-MF were tested on different rows"):
        versus_anchor(records, "TALLRec", "auc")
