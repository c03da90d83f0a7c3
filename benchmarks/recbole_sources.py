"""CoLLM over RecBole's own LightGCN and SASRec checkpoints beside the plugin-trained LightGCNCTR and
SASRecCTR: each CoLLM against its source on the same test rows, with the paired bootstrap interval.

    python -m benchmarks.recbole_sources [--dataset ml-100k] [--recbole-epochs 30] [--sequence-epochs 5]

RecBole's checkpoints come from RecBole's own ``run_recbole`` on RecBole's protocol (every rated
row an interaction, RecBole's split; SASRec next-item with its CE loss; the interaction columns
loaded), as a RecBole user has them, capped at ``--recbole-epochs`` epochs (``--sequence-epochs``
for the SASRec models; RecBole's early stopping within). The plugin's come
from ``run_recbole_collm.py`` with their yaml (BCE on labels). One LoRA stage (TALLRec on CoLLM's
own LoRA budget: 200 of its 1,000 seeded train rows) is shared by the four CoLLM runs, which each
train the CIE stage with CoLLM's defaults. Resumable: every finished run is kept under
``benchmarks/results/recbole_sources/runs/`` and not recomputed. Writes ``<dataset>.json`` and
``<dataset>.md`` there.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, fmt, parse_args
from recbole_collm.files import atomic_write

OUT = ROOT / "benchmarks" / "results" / "recbole_sources"
SOURCES = (("LightGCN", "RecBole's run_recbole"), ("SASRec", "RecBole's run_recbole"),
           ("LightGCNCTR", "the plugin's runner"), ("SASRecCTR", "the plugin's runner"))


def cached(name: str, dataset: str, work, args: argparse.Namespace) -> dict:
    """``work()``'s record, computed once (``runs/<dataset>/<name>.json``), in a process of its
    own (``--step``): a RecBole run after an LLM run in one process trained ~15x slower here."""
    path = OUT / "runs" / dataset / f"{name}.json"
    if args.report_only:
        return json.loads(path.read_text()) if path.is_file() else {}
    if args.step is None:
        if not path.is_file():
            subprocess.run([sys.executable, "-m", "benchmarks.recbole_sources", "--dataset", dataset, "--recbole-epochs",
                            str(args.recbole_epochs), "--sequence-epochs", str(args.sequence_epochs), "--step", name],
                           cwd=ROOT, check=True)
        print(f"{name}: {path}", flush=True)
        return json.loads(path.read_text())
    if args.step != name:
        return json.loads(path.read_text()) if path.is_file() else {}
    start = time.perf_counter()
    record = {**work(), "seconds": None}
    record["seconds"] = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, default=float)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    return record


def recbole_checkpoint(name: str, dataset: str, epochs: int) -> dict:
    from recbole.quick_start import run_recbole

    folder = OUT / "saved" / dataset / name
    # the interaction columns only: RecBole's ml-100k default also loads item features, which its
    # sequential loader joins for every history position (~2 min an epoch of SASRec on 2 cores)
    settings = {"epochs": epochs, "checkpoint_dir": str(folder), "show_progress": False,
                "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]}}
    if name == "SASRec":
        settings["train_neg_sample_args"] = None  # RecBole's CE loss samples nothing
        settings["MAX_ITEM_LIST_LENGTH"] = 25  # what CoLLM reads (cf_history_length); RecBole's 50 costs twice
    result = run_recbole(model=name, dataset=dataset, config_dict=settings)
    path = max(glob.glob(str(folder / f"{name}-*.pth")), key=os.path.getmtime)
    return {"model_file": path, "test_result": dict(result["test_result"])}


def plugin_run(model: str, dataset: str, settings: dict) -> dict:
    from recbole_collm import run_recbole_collm

    folder = OUT / "saved" / dataset / model
    result = run_recbole_collm(model=model, dataset=dataset, config_dict={"checkpoint_dir": str(folder),
                                                                         "show_progress": False, **settings})
    comparison = result["source_comparison"] or []
    source = result["source_test_result"] or {}
    return {"model_file": result["model_file"], "test_result": dict(result["test_result"]),
            "source_test_result": dict(source), "comparison": [str(c) for c in comparison],
            "intervals": [{"metric": c.metric, "a": c.a, "b": c.b, "low": c.low, "high": c.high, "verdict": c.verdict,
                           "users": c.users, "rows": c.rows} for c in comparison]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--recbole-epochs", type=int, default=30, help="the epoch cap of the four collaborative models")
    parser.add_argument("--sequence-epochs", type=int, default=5,
                        help="the SASRec models' cap (an epoch of RecBole's SASRec on ml-100k: ~1 min on 2 cores)")
    parser.add_argument("--report-only", action="store_true", help="the table from the finished runs, computing nothing")
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)  # one record, in its own process
    args = parse_args(parser)
    dataset = args.dataset
    lora = cached("TALLRec", dataset, lambda: plugin_run("TALLRec", dataset, {"train_rows_limit": 1000, "lora_train_rows": 200}),
                  args)
    rows = []
    for name, trained_by in SOURCES:
        epochs = args.sequence_epochs if name.startswith("SASRec") else args.recbole_epochs
        if trained_by.startswith("RecBole"):
            source = cached(f"recbole-{name}", dataset, lambda: recbole_checkpoint(name, dataset, epochs), args)
        else:
            source = cached(name, dataset, lambda: plugin_run(name, dataset, {"epochs": epochs}), args)
        collm = cached(f"CoLLM-{name}", dataset, lambda: plugin_run("CoLLM", dataset, {
            "stage": "cie", "lora_checkpoint": lora["model_file"], "cf_checkpoint": source["model_file"]}), args)
        rows.append((name, trained_by, source, collm))
    if args.step is not None:
        return
        for line in collm["comparison"]:
            print(f"CoLLM-{name} vs its source: {line}", flush=True)
    lines = [f"`python -m benchmarks.recbole_sources --dataset {dataset} --recbole-epochs {args.recbole_epochs} "
             f"--sequence-epochs {args.sequence_epochs}` "
             f"({time.strftime('%Y-%m-%d')}, 2 CPU cores, SmolLM2 bf16; CoLLM's CIE stage from one shared LoRA stage; "
             "the same test rows for CoLLM and its source)", "",
             "| source | trained by | source AUC | CoLLM AUC | CoLLM − source AUC [95% interval] | UAUC difference [95% interval] | CoLLM s |",
             "|---|---|---|---|---|---|---|"]
    for name, trained_by, source, collm in rows:
        if not collm:
            lines.append(f"| {name} | {trained_by} | not measured | | | | |")
            continue
        by = {i["metric"]: i for i in collm["intervals"]}
        cells = []
        for metric in ("auc", "uauc"):
            i = by.get(metric)
            cells.append("undefined" if not i or i["verdict"] == "undefined" else
                         f"{i['a'] - i['b']:+.4f} [{i['low']:+.4f}, {i['high']:+.4f}]"
                         + (" not significant" if i["verdict"] == "not significant" else ""))
        lines.append(f"| {name} | {trained_by} | {fmt(collm['source_test_result'].get('auc'))} | "
                     f"{fmt(collm['test_result'].get('auc'))} | {cells[0]} | {cells[1]} | {collm['seconds']:.0f} |")
    text = "\n".join(lines) + "\n"
    (OUT / f"{dataset}.md").write_text(text)
    (OUT / f"{dataset}.json").write_text(json.dumps({name: {"trained_by": by, "collm": c} for name, by, _, c in rows if c},
                                                   indent=1, default=float))
    print(text)


if __name__ == "__main__":
    main()
