"""benchmarks/report.py: what its tables say about the runs behind them."""
from benchmarks.report import llm_train_rows


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
