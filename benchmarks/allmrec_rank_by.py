"""A-LLMRec's candidate score, chosen on validation queries: one trained model, its validation
candidate sets ranked under each ``rank_by``, HR@1 / HR@10 with each score's paired bootstrap
interval against the first one (the default, ``sum``), and the mean within-query correlation of score and title length
(the bias a length-free score must not have).

    python -m benchmarks.allmrec_rank_by [--dataset ml-100k] [--valid-rows 600] [--rank-by sum relative mean]
                                         [--set llm_path=/models/qwen2 epochs=2]

The model trains once with its yaml's defaults (plus ``--set``); only validation rows are ranked
(test rows are for reporting). The title likelihoods behind ``relative``, ``sum`` and ``mean``
are computed once (the passes after the first reuse them). Writes benchmarks/results/allmrec_rank_by/<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks.common import ROOT, fmt, parse_args
from recbole_collm.evaluator.compare import paired_bootstrap_mean
from recbole_collm.settings import RANK_BY


class Recorder:
    """Scores the validation set once: every ``rank_by`` but ``generate`` combines the same title
    log-likelihoods (:meth:`ALLMRec.candidate_title_ll`), so they are kept per batch (the same
    loader order each pass) and each pass's scores are kept with their titles' lengths, for the
    score–length correlation — no second scoring of the set. It stands in for the model's
    ``predict`` in the trainer's evaluation, through public methods only."""

    def __init__(self, model) -> None:
        self.model, self.memo, self.scored = model, {}, []
        predict = model.predict

        def recorded(interaction):
            if model.rank_by == "generate":
                scores = predict(interaction)
            else:
                items = interaction[model.ITEM_ID].tolist()
                key = (tuple(interaction[model.USER_ID].tolist()), tuple(items))
                if key not in self.memo:
                    self.memo[key] = model.candidate_title_ll(interaction)
                scores = model.rank_scores(self.memo[key], items, model.rank_by)
            self.scored.append((interaction[model.ITEM_ID].tolist(), scores.detach().float().cpu().numpy()))
            return scores

        model.predict = recorded

    def length_correlation(self, per_query: int) -> float:
        """Mean over queries of the Pearson correlation between a candidate's score and its
        title's length in tokens, over the last pass (queries whose scores or lengths are all
        equal are left out); then forgets that pass."""
        correlations = []
        for items, scores in self.scored:
            lengths = np.array([len(self.model.quoted[i]) for i in items], dtype=float).reshape(-1, per_query)
            for s, n in zip(scores.reshape(-1, per_query), lengths):
                if s.std() > 0 and n.std() > 0:
                    correlations.append(np.corrcoef(s, n)[0, 1])
        self.scored = []
        return float(np.mean(correlations))


def main() -> None:
    from recbole.utils import init_logger

    from recbole_collm import Config
    from recbole_collm.quick_start import prepare

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--valid-rows", type=int, default=600, help="seeded validation rows; the positive ones are the queries")
    parser.add_argument("--rank-by", nargs="+", choices=RANK_BY, default=list(RANK_BY[:3]))
    parser.add_argument("--config-files", nargs="+")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "allmrec_rank_by"))
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="settings (yaml values) for the run")
    args = parse_args(parser)
    settings = {"eval_rows_limit": args.valid_rows, "checkpoint_dir": str(Path(args.out) / "saved"), "eval_step": 0}
    settings.update({k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)})
    config = Config(model="ALLMRec", dataset=args.dataset, config_file_list=args.config_files, config_dict=settings)
    init_logger(config)
    start = time.perf_counter()
    _, (train, valid, _), model, trainer = prepare(config)
    trainer.fit(train, None, saved=True, show_progress=config["show_progress"])
    train_seconds = time.perf_counter() - start
    model.eval()
    users = valid._dataset.inter_feat[valid._dataset.uid_field].numpy()
    results, first_hits, recorder = {}, {}, Recorder(model)
    for rank_by in args.rank_by:
        model.rank_by = rank_by
        start = time.perf_counter()
        result = trainer.evaluate(valid, load_best_model=False, show_progress=config["show_progress"])
        first_hits[rank_by] = result.first_hit
        correlation = recorder.length_correlation(valid.candidates.shape[1])
        results[rank_by] = {"hit@1": float(result["hit@1"]), "hit@10": float(result["hit@10"]),
                            "length_correlation": correlation if rank_by != "generate" else None,
                            "seconds": time.perf_counter() - start, "first_hit": result.first_hit.tolist()}
    reference = args.rank_by[0]
    print(f"\n{args.dataset}: {len(users)} validation queries (target + {valid.candidates.shape[1] - 1} unseen), "
          f"one model trained with {', '.join(args.set) or 'the yaml defaults'}")
    print("| rank_by | HR@1 | HR@10 | score–length correlation | HR@1 vs " + reference + " (95% interval) |\n|---|---|---|---|---|")
    for rank_by, figures in results.items():
        vs = ""
        if rank_by != reference:
            c = paired_bootstrap_mean(users, first_hits[rank_by] == 0, first_hits[reference] == 0, "hit@1")
            figures["vs_" + reference] = {"difference": c.difference, "low": c.low, "high": c.high,
                                          "significant": c.significant}
            vs = f"{c.difference:+.4f} [{c.low:+.4f}, {c.high:+.4f}]{'' if c.significant else ' not significant'}"
        print(f"| {rank_by} | {fmt(figures['hit@1'])} | {fmt(figures['hit@10'])} | {fmt(figures['length_correlation'])} | {vs} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.dataset}.json").write_text(json.dumps({"queries": int(len(users)), "user": users.tolist(), "settings": args.set, "train_seconds": train_seconds,
                                                          "results": results},
                                                         indent=1) + "\n")


if __name__ == "__main__":
    main()
