"""The three ways of giving an LLM collaborative knowledge on one pipeline: SASRec, CoLLM-MF (ranked
by its Yes score), A-LLMRec and CLLM4Rec on the same candidate sets (each positive test row, its
target and 19 seeded unseen items: HR@1, HR@10, NDCG@10), and MF, LightGCN and CLLM4Rec in
full-sort ranking (Recall@20, NDCG@100), with wall time per run.

    python -m benchmarks.llm_recommenders [--datasets ml-100k] [--only MF CLLM4Rec] [--test-rows 0]
                                          [--config-files my.yaml] [--set llm_path=/models/qwen2 CLLM4Rec:epochs=3]

Each model trains once with its own defaults (its yaml: the CPU budgets docs/models.md states) on the
dataset's split, then its final weights are evaluated under both protocols by RecBole's evaluator
(A-LLMRec ranks candidate sets only; CoLLM is not full-sorted: 1,682 prompts per query on a CPU).
All runs share the test rows (every one by default: each positive row is a query; ``--test-rows N``
a seeded sample of N) and the seeded candidate sets; CoLLM-MF reads the MF run's checkpoint and
A-LLMRec the SASRec run's (when those runs are part of it). Each model's difference to its
reference (A-LLMRec vs SASRec, CLLM4Rec vs MF, CoLLM-MF vs MF) comes with a 95% paired bootstrap
interval over users, from the per-query results every run keeps. Finished runs are kept under
benchmarks/results/llm_recommenders/runs/ and never recomputed; ``--only`` adds or replaces runs in
the dataset's summary (taken on the same queries) and keeps the others. Writes
benchmarks/results/llm_recommenders/<dataset>.json and prints the table and the comparisons.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.common import ROOT, available, fmt, parse_args
from recbole_collm.data.dataloader import CANDIDATES_FIELD
from recbole_collm.errors import InputError
from recbole_collm.evaluator.compare import Comparison, paired_bootstrap_mean

CANDIDATES = {"mode": "uni19", "metrics": ["Hit", "NDCG"], "topk": [1, 10], "valid_metric": "Hit@1"}
FULL = {"mode": "full", "metrics": ["Recall", "NDCG"], "topk": [20, 100], "valid_metric": "NDCG@100"}
# the CF run whose checkpoint an LLM model reads (the same weights)
SOURCES = {"CoLLM-MF": "MF", "A-LLMRec": "SASRec", "A-LLMRec stage 1": "SASRec"}
RUNS = {  # name -> (model, its own settings, protocols it is evaluated under)
    "Pop": ("Pop", {}, ("candidates", "full")),
    "MF": ("MF", {}, ("candidates", "full")),
    "LightGCN": ("LightGCNCTR", {}, ("candidates", "full")),
    "SASRec": ("SASRec", {"epochs": 5}, ("candidates", "full")),  # RecBole's next-item SASRec (A-LLMRec's source)
    "CoLLM-MF": ("CoLLM", {"eval_step": 0}, ("candidates",)),
    "A-LLMRec stage 1": ("ALLMRec", {"stage": "align"}, ("candidates",)),  # user · decoded item, no LLM
    "A-LLMRec": ("ALLMRec", {"keep_best_stage": False}, ("candidates",)),  # the LLM stage's own figure
    "CLLM4Rec": ("CLLM4Rec", {}, ("candidates", "full")),
}
NO_TOKENS = "A-LLMRec, no soft tokens"  # the trained A-LLMRec ranking with its soft tokens left out
SHUFFLED_USERS = "CLLM4Rec, users' tokens shuffled"  # the trained CLLM4Rec, each user read through another's token
ROWS = [*list(RUNS)[:7], NO_TOKENS, "CLLM4Rec", SHUFFLED_USERS]
# model, its reference, the protocol and metric the paper's claim is about
COMPARISONS = (("A-LLMRec", "SASRec", "candidates", "hit@1"), ("A-LLMRec", "A-LLMRec stage 1", "candidates", "hit@1"),
               ("A-LLMRec", NO_TOKENS, "candidates", "hit@1"), ("A-LLMRec", "Pop", "candidates", "hit@1"),
               ("CLLM4Rec", "MF", "full", "recall@20"), ("CLLM4Rec", "Pop", "full", "recall@20"),
               ("CLLM4Rec", SHUFFLED_USERS, "full", "recall@20"),
               ("CoLLM-MF", "MF", "candidates", "hit@1"))
DIAGNOSTIC_QUERIES = 100  # queries the shuffled-token diagnostic re-ranks (one more LLM pass each)
COLUMNS = (("candidates", "hit@1"), ("candidates", "hit@10"), ("candidates", "ndcg@10"),
           ("full", "recall@20"), ("full", "ndcg@100"))


NEGATIVES = [19]  # --negatives (the paper's 19; a small test dataset needs fewer)
FULL_TOPK = [20, 100]  # --full-topk (the paper's Recall@20 and NDCG@100)


def protocol_settings(protocol: str, split: dict) -> dict:
    spec = CANDIDATES if protocol == "candidates" else FULL
    mode = f"uni{NEGATIVES[0]}" if protocol == "candidates" else spec["mode"]
    topk = spec["topk"] if protocol == "candidates" else FULL_TOPK
    return {"eval_args": {**split, "mode": mode}, "metrics": spec["metrics"], "topk": topk,
            "valid_metric": f"{spec['metrics'][-1]}@{topk[-1]}"}


def run_one(name: str, dataset: str, test_rows: int, out: Path, files: list[str] | None = None, extra: dict | None = None) -> dict:
    """Train ``name`` once with its defaults, then evaluate its final weights under each protocol."""
    from recbole.utils import init_logger

    from recbole_collm import Config
    from recbole_collm.data import create_dataset
    from recbole_collm.data.utils import data_preparation
    from recbole_collm.quick_start import prepare
    from recbole_collm.utils import get_model, get_trainer

    model_name, own, protocols = RUNS[name]
    common = {"eval_rows_limit": test_rows or None, "eval_rows_sample": "rows", "checkpoint_dir": str(out / "saved" / dataset),
              "show_progress": True, **(extra or {})}
    if model_name not in ("CoLLM", "ALLMRec", "CLLM4Rec"):  # the LLM settings are not the CF models' keys
        common = {k: v for k, v in common.items() if not k.startswith("llm_")}

    def make(settings: dict, model: str = model_name):
        return Config(model=model, dataset=dataset, config_file_list=files, config_dict=settings)

    config = make({**common, **own})
    split = {k: v for k, v in config["eval_args"].items() if k != "mode"}
    if model_name in ("ALLMRec", "CLLM4Rec"):  # they rank while they train: their own protocol there
        config = make({**common, **own, **protocol_settings("candidates" if model_name == "ALLMRec" else "full", split)})
    init_logger(config)
    start = time.perf_counter()
    _, (train, valid, _), model, trainer = prepare(config)
    trainer.fit(train, valid, saved=True, show_progress=config["show_progress"])
    record = {"model": model_name, "train_seconds": time.perf_counter() - start, "results": {}, "test_seconds": {},
              "model_file": trainer.saved_model_file}
    for k, protocol in enumerate(protocols):
        ranked = make({**common, **own, **protocol_settings(protocol, split)})
        # RecBole's own models (Pop, SASRec) rank the plugin's per-row queries, as every other run:
        # RecBole's loaders would group a user's rows into one query over every test row
        queries = ranked if get_model(model_name).__module__.startswith("recbole_collm.") else make(
            {**common, **protocol_settings(protocol, split)}, model="MF")
        _, _, test = data_preparation(queries, create_dataset(queries))
        evaluator = get_trainer(ranked["MODEL_TYPE"], model_name)(ranked, model)
        # the run's saved (best) weights, loaded by RecBole's evaluate before the first protocol
        _evaluate(record, protocol, evaluator, test, config["show_progress"], model_file=None if k else trainer.saved_model_file)
        if name == "A-LLMRec":
            record["diagnostics"] = soft_token_diagnostics(model, test)
            model.soft_tokens = False
            _evaluate(_derived(record, NO_TOKENS), protocol, evaluator, test, config["show_progress"])
            model.soft_tokens = True
        if name == "CLLM4Rec":
            generator = torch.Generator().manual_seed(2024)
            model.user_token_permutation = torch.cat([torch.zeros(1, dtype=torch.long),
                                                      1 + torch.randperm(model.tokens.user.num_embeddings - 1, generator=generator)])
            _evaluate(_derived(record, SHUFFLED_USERS), protocol, evaluator, test, config["show_progress"])
            model.user_token_permutation = None
    return record


def _derived(record: dict, row: str) -> dict:
    """The record of a reference row evaluated from ``record``'s trained model (nothing trained of its own)."""
    return record.setdefault("derived", {}).setdefault(row, {"model": record["model"], "train_seconds": 0.0, "results": {},
                                                             "test_seconds": {}})


def _evaluate(record: dict, protocol: str, evaluator, test, show_progress: bool, model_file: str | None = None) -> None:
    """RecBole's evaluation of ``test`` into ``record``: the metrics, the seconds, and each query's
    user and first-hit place (for the paired intervals)."""
    start = time.perf_counter()
    result = evaluator.evaluate(test, load_best_model=model_file is not None, model_file=model_file, show_progress=show_progress)
    record["test_seconds"][protocol] = time.perf_counter() - start
    record["results"][protocol] = {k: float(v) for k, v in result.items()}
    record.setdefault("queries", {})[protocol] = int(test.sample_size)
    record.setdefault("per_query", {})[protocol] = {
        "user": test._dataset.inter_feat[test._dataset.uid_field].tolist(), "first_hit": result.first_hit.tolist()}


@torch.no_grad()
def soft_token_diagnostics(model, test) -> dict:
    """Does A-LLMRec's LLM get items it can tell apart, and read them? Over the test queries: the
    mean pairwise cosine of each query's candidates' soft tokens; over the catalogue: how often an
    item's own title is the nearest text latent to its item latent; over the first
    ``DIAGNOSTIC_QUERIES`` queries: how often permuting the candidates' soft tokens among them
    (titles in place) changes the top-ranked candidate."""
    model.eval()
    ranks = model.own_title_rank().cpu().numpy()
    cosines, changed, queries = [], 0, 0
    generator = torch.Generator().manual_seed(2024)
    for batch in test:
        interaction = batch[0].to(model.device)
        cosines += model.candidate_token_cosine(interaction).tolist()
        if queries >= DIAGNOSTIC_QUERIES:
            continue
        items = interaction[model.ITEM_ID].tolist()
        plain = model.rank_scores(model.candidate_title_ll(interaction), items, model.rank_by)
        shuffled = model.rank_scores(model.candidate_title_ll(interaction, shuffle_tokens=generator), items, model.rank_by)
        keys = [(u, tuple(c)) for u, c in zip(interaction[model.USER_ID].tolist(), interaction[CANDIDATES_FIELD].tolist())]
        for key in dict.fromkeys(keys):
            rows = [r for r, k in enumerate(keys) if k == key]
            changed += items[rows[int(plain[rows].argmax())]] != items[rows[int(shuffled[rows].argmax())]]
            queries += 1
    return {"candidate_token_cosine": float(np.mean(cosines)), "own_title_top1": float((ranks == 0).mean()),
            "own_title_median_rank": float(np.median(ranks)), "catalogue": int(len(ranks)),
            "shuffle_changes_top": changed / max(queries, 1), "shuffle_queries": queries}


def per_query(record: dict, protocol: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Each query's user and value of ``metric`` (hit@K, recall@K — one relevant item per query —
    or ndcg@K) from the run's first-hit places."""
    kept = record["per_query"][protocol]
    first, k = np.asarray(kept["first_hit"]), int(metric.split("@")[1])
    inside = (first >= 0) & (first < k)
    value = inside / np.log2(np.where(inside, first, 0) + 2) if metric.startswith("ndcg") else inside.astype(float)
    return np.asarray(kept["user"]), value


def comparisons(records: dict) -> list[tuple[str, str, str, Comparison]]:
    """Each model against its reference on the same queries (a pair is skipped when a run is absent)."""
    out = []
    for name, reference, protocol, metric in COMPARISONS:
        if protocol not in records.get(name, {}).get("per_query", {}) or protocol not in records.get(reference, {}).get("per_query", {}):
            continue
        users, mine = per_query(records[name], protocol, metric)
        other_users, theirs = per_query(records[reference], protocol, metric)
        if not np.array_equal(users, other_users):
            raise InputError(f"{name} and {reference} were ranked on different {protocol} queries")
        out.append((name, reference, protocol, paired_bootstrap_mean(users, mine, theirs, metric)))
    return out


def kept_runs(summary: Path, args) -> dict:
    """The runs an earlier summary of this dataset holds, when they were taken on the same queries
    (test rows, negatives, cut-offs): ``--only`` adds or replaces runs beside them, never drops them."""
    if not summary.is_file():
        return {}
    kept = json.loads(summary.read_text())
    same = (kept.get("test_rows"), kept.get("negatives"), kept.get("full_topk", [20, 100])) == (
        args.test_rows, args.negatives, FULL_TOPK)
    return dict(kept.get("models", {})) if same else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"])
    parser.add_argument("--only", nargs="+", choices=list(RUNS), metavar="RUN")
    parser.add_argument("--test-rows", type=int, default=0,
                        help="seeded valid/test rows (0: all); the positive ones are the queries")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "llm_recommenders"))
    parser.add_argument("--negatives", type=int, default=19, help="sampled negatives per candidate set")
    parser.add_argument("--full-topk", type=int, nargs=2, default=[20, 100], metavar=("RECALL_K", "NDCG_K"))
    parser.add_argument("--config-files", nargs="+", help="yaml files every run reads (e.g. a dataset's)")
    parser.add_argument("--set", nargs="+", default=[], metavar="[RUN:]KEY=VALUE",
                        help="settings (yaml values) for every run, or for one run with RUN: (e.g. CLLM4Rec:epochs=3)")
    args = parse_args(parser)
    NEGATIVES[0] = args.negatives
    FULL_TOPK[:] = args.full_topk
    columns = (*COLUMNS[:3], ("full", f"recall@{FULL_TOPK[0]}"), ("full", f"ndcg@{FULL_TOPK[1]}"))
    extra: dict[str, dict] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        run, _, key = key.rpartition(":")
        for name in [run] if run else RUNS:
            extra.setdefault(name, {})[key] = yaml.safe_load(value)
    out = Path(args.out)
    for dataset in available(args.datasets) if not args.config_files else args.datasets:
        records = kept_runs(out / f"{dataset}.json", args)
        for name in args.only or RUNS:
            path = out / "runs" / dataset / f"{name}-{args.test_rows}-uni{args.negatives}-full{FULL_TOPK[0]}-{FULL_TOPK[1]}.json"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                settings = dict(extra.get(name) or {})
                source = records.get(SOURCES.get(name), {}).get("model_file")
                if source and "cf_checkpoint" not in settings:  # the table's own MF / SASRec, not a second one
                    settings["cf_checkpoint"] = source
                record = run_one(name, dataset, args.test_rows, out, args.config_files, settings)
                path.write_text(json.dumps(record, indent=1) + "\n")
            records[name] = json.loads(path.read_text())
            records.update(records[name].get("derived", {}))
        records = {name: records[name] for name in ROWS if name in records}
        summary = {"test_rows": args.test_rows, "negatives": args.negatives, "full_topk": FULL_TOPK, "models": records}
        (out / f"{dataset}.json").write_text(json.dumps(summary, indent=1) + "\n")
        queries = next(iter(records.values())).get("queries", {})
        print(f"\n{dataset}: {queries.get('candidates', '?')} candidate-set queries (target + {args.negatives} unseen), "
              f"{queries.get('full', '?')} full-sort queries")
        print(f"| model | HR@1 | HR@10 | NDCG@10 | Recall@{FULL_TOPK[0]} (full) | NDCG@{FULL_TOPK[1]} (full) | train s |")
        print("|---|---|---|---|---|---|---|")
        for name, record in records.items():
            cells = " | ".join(fmt(record["results"].get(p, {}).get(k)) for p, k in columns)
            print(f"| {name} | {cells} | {record['train_seconds']:.0f} |")
        found = comparisons(records)
        if found:
            print("\nEach model against its reference (95% paired bootstrap over users):")
        for name, reference, protocol, comparison in found:
            print(f"- {name} above {reference} ({protocol}): {comparison.verdict} — {comparison}")
        if "diagnostics" in records.get("A-LLMRec", {}):
            d = records["A-LLMRec"]["diagnostics"]
            print(f"\nA-LLMRec's soft tokens: candidates' mean cosine {d['candidate_token_cosine']:.3f}; own title nearest "
                  f"{d['own_title_top1']:.1%} of {d['catalogue']} items (median rank {d['own_title_median_rank']:.0f}); "
                  f"shuffling the candidates' tokens changes the top candidate in {d['shuffle_changes_top']:.1%} of "
                  f"{d['shuffle_queries']} queries")
            summary["diagnostics"] = d
        summary["comparisons"] = [{"model": name, "reference": reference, "protocol": protocol, "metric": c.metric,
                                   "model_value": c.a, "reference_value": c.b, "difference": c.difference, "low": c.low,
                                   "high": c.high, "verdict": c.verdict, "users": c.users, "queries": c.rows}
                                  for name, reference, protocol, c in found]
        (out / f"{dataset}.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
