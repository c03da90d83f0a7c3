"""Every RecBole model through the plugin's runner on the labeled protocol: one epoch each on a
dataset, in a process of its own, then a table of what runs, what is refused (with its one line)
and what ends in a traceback.

    python -m benchmarks.recbole_models [--dataset ml-100k] [--models BPR,DeepFM] [--timeout 900]

Writes ``benchmarks/results/recbole_models/<dataset>.md`` and ``.json``: model, RecBole type,
outcome (runs / refused: its one line / NaN stop: the trainer's one line / traceback / timeout), test AUC and UAUC after one epoch, seconds
(the whole process: data, one epoch, validation and test). One epoch trains nothing to its best:
the AUC says the model runs on the protocol and learns something, not how good it is.
"""
from __future__ import annotations

import argparse
import json
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, fmt, parse_args

PACKAGES = ("general_recommender", "context_aware_recommender", "sequential_recommender",
            "knowledge_aware_recommender", "exlib_recommender")
# one run: the runner's result as one JSON line, or its one-line refusal (exit 2), or a traceback
RUN = """
import json, sys, time
start = time.perf_counter()
from recbole_collm import run_recbole_collm
from recbole_collm.errors import InputError
try:
    result = run_recbole_collm(model=sys.argv[1], dataset=sys.argv[2], config_dict={
        "epochs": 1, "checkpoint_dir": sys.argv[3], "show_progress": False, "state": "ERROR"}, saved=False)
except InputError as err:
    print("REFUSED " + str(err).splitlines()[0]); sys.exit(2)
except FloatingPointError as err:  # the trainer's stop on a NaN loss (the command line prints this one line)
    print("STOPPED " + str(err).splitlines()[0]); sys.exit(3)
test = result["test_result"]
print("RESULT " + json.dumps({"auc": test.get("auc"), "uauc": test.get("uauc"), "seconds": time.perf_counter() - start}))
"""


def recbole_models() -> list[tuple[str, str]]:
    """``(package, class name)`` of every model RecBole ships: the class in each model module
    whose name is the module's (RecBole's one-model-per-file rule), found without importing the
    modules (exlib's need lightgbm / xgboost)."""
    import recbole.model

    found = []
    for package in PACKAGES:
        folder = Path(recbole.model.__file__).parent / package
        for module in sorted(m.name for m in pkgutil.iter_modules([str(folder)])):
            text = (folder / f"{module}.py").read_text()
            names = [line.split()[1].split("(")[0] for line in text.splitlines() if line.startswith("class ")]
            name = next((n for n in names if n.lower() == module), None)
            if name:
                found.append((package, name))
    return found


def run_one(model: str, dataset: str, timeout: int, folder: Path) -> dict:
    """One model in a process of its own (a crash or a leak stays there)."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", RUN, model, dataset, str(folder / model)], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"outcome": "timeout", "why": f"over {timeout} s", "seconds": time.perf_counter() - start}
    lines = done.stdout.splitlines()
    result = next((line[7:] for line in lines if line.startswith("RESULT ")), None)
    if done.returncode == 0 and result:
        return {"outcome": "runs", **json.loads(result)}
    refused = next((line[8:] for line in lines if line.startswith("REFUSED ")), None)
    if done.returncode == 2 and refused:
        return {"outcome": "refused", "why": refused, "seconds": time.perf_counter() - start}
    stopped = next((line[8:] for line in lines if line.startswith("STOPPED ")), None)
    if done.returncode == 3 and stopped:
        return {"outcome": "NaN stop", "why": stopped, "seconds": time.perf_counter() - start}
    last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["(no output)"]
    return {"outcome": "traceback", "why": last[0][:200], "seconds": time.perf_counter() - start}


def table(dataset: str, rows: dict) -> str:
    counts = {k: sum(r["outcome"] == k for r in rows.values()) for k in ("runs", "refused", "NaN stop", "traceback", "timeout")}
    lines = [f"RecBole's models through `run_recbole_collm.py` on {dataset}, labeled protocol, one epoch each: "
             + ", ".join(f"{v} {k}" for k, v in counts.items()) + f" of {len(rows)}.", "",
             "| model | RecBole type | outcome | AUC | UAUC | seconds | why |", "|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['package'].replace('_recommender', '')} | {row['outcome']} | {fmt(row.get('auc'))} | "
                     f"{fmt(row.get('uauc'))} | {row['seconds']:.0f} | {row.get('why', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--models", default=None, help="comma-separated names (default: every RecBole model)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per model")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "recbole_models"))
    args = parse_args(parser)
    models = recbole_models()
    if args.models:
        wanted = args.models.split(",")
        models = [(p, n) for p, n in models if n in wanted]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{args.dataset}.json"
    rows = json.loads(json_path.read_text()) if json_path.is_file() and args.models else {}
    scratch = out / "saved"
    for k, (package, name) in enumerate(models, start=1):
        rows[name] = {"package": package, **run_one(name, args.dataset, args.timeout, scratch)}
        row = rows[name]
        print(f"[{k}/{len(models)}] {name}: {row['outcome']} AUC {fmt(row.get('auc'))} {row['seconds']:.0f} s "
              f"{row.get('why', '')}", flush=True)
        json_path.write_text(json.dumps(rows, indent=1))
    text = f"`python -m benchmarks.recbole_models --dataset {args.dataset}` ({time.strftime('%Y-%m-%d')}, 2 CPU cores)\n\n"
    text += table(args.dataset, rows)
    (out / f"{args.dataset}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
