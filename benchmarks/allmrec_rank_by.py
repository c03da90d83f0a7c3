"""A-LLMRec's candidate score, chosen on validation queries: one trained model, its validation
candidate sets ranked under each ``rank_by``, HR@1 / HR@10 with each score's paired bootstrap
interval against ``relative``, and the mean within-query correlation of score and title length
(the bias a length-free score must not have).

    python benchmarks/allmrec_rank_by.py [--dataset ml-100k] [--valid-rows 600] [--rank-by relative sum mean]
                                         [--set llm_path=/models/qwen2 epochs=2]

The model trains once with its yaml's defaults (plus ``--set``); only validation rows are ranked
(test rows are for reporting). Writes benchmarks/results/allmrec_rank_by/<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, fmt, parse_args  # noqa: E402
from recbole_collm.evaluator.compare import paired_bootstrap_mean  # noqa: E402

SCORES = ("relative", "sum", "mean", "generate")


def length_correlation(model, loader) -> float:
    """Mean over queries of the Pearson correlation between a candidate's score and its title's
    length in tokens (queries whose scores or lengths are all equal are left out)."""
    correlations = []
    with torch.no_grad():
        for rows, _, _, _ in loader:
            per_query = loader.candidates.shape[1]
            scores = model.predict(rows).view(-1, per_query).float().numpy()
            lengths = np.array([len(model.quoted[i]) for i in rows[model.ITEM_ID].tolist()], dtype=float).reshape(-1, per_query)
            for s, n in zip(scores, lengths):
                if s.std() > 0 and n.std() > 0:
                    correlations.append(np.corrcoef(s, n)[0, 1])
    return float(np.mean(correlations))


def main() -> None:
    from recbole.utils import init_logger

    from recbole_collm import Config
    from recbole_collm.quick_start import prepare

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--valid-rows", type=int, default=600, help="seeded validation rows; the positive ones are the queries")
    parser.add_argument("--rank-by", nargs="+", choices=SCORES, default=["relative", "sum", "mean"])
    parser.add_argument("--config-files", nargs="+")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "allmrec_rank_by"))
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="settings (yaml values) for the run")
    args = parse_args(parser)
    settings = {"eval_rows_limit": args.valid_rows, "checkpoint_dir": str(Path(args.out) / "saved"), "eval_step": 0}
    settings.update({k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)})
    config = Config(model="ALLMRec", dataset=args.dataset, config_file_list=args.config_files, config_dict=settings)
    init_logger(config)
    _, (train, valid, _), model, trainer = prepare(config)
    trainer.fit(train, None, saved=True, show_progress=config["show_progress"])
    model.eval()
    users = valid._dataset.inter_feat[valid._dataset.uid_field].numpy()
    results, first_hits = {}, {}
    for rank_by in args.rank_by:
        model.rank_by = rank_by
        result = trainer.evaluate(valid, load_best_model=False)
        first_hits[rank_by] = result.first_hit
        results[rank_by] = {"hit@1": float(result["hit@1"]), "hit@10": float(result["hit@10"]),
                            "length_correlation": length_correlation(model, valid) if rank_by != "generate" else None}
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
    (out / f"{args.dataset}.json").write_text(json.dumps({"queries": int(len(users)), "settings": args.set, "results": results},
                                                         indent=1) + "\n")


if __name__ == "__main__":
    main()
