"""A-LLMRec's stage 1 on validation queries, its inputs read raw (the official code) or standardised
over the catalogue (``align_inputs``): does the joint latent keep items apart?

    python -m benchmarks.allmrec_align [--dataset ml-100k] [--valid-rows 600] [--inputs raw standardized]
                                       [--set align_learning_rate=0.001]

Per variant, one stage-1 run (the yaml's budget; the same cached SASRec source for both) and on
the seeded validation queries (target + 19 unseen items): stage 1's own HR@1 (user · decoded item,
no LLM), the mean pairwise cosine of each query's candidates' item latents, the share of catalogue
items whose own title is the nearest text latent to their item latent, and that rank's median.
Each variant's HR@1 against the first variant's with a 95% paired bootstrap interval over users.
Writes benchmarks/results/allmrec_align/<dataset>[-<settings>].json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.common import ROOT, fmt, parse_args
from recbole_collm.data.dataloader import CANDIDATES_FIELD
from recbole_collm.evaluator.compare import paired_bootstrap_mean
from recbole_collm.model.llm_recommender.allmrec import mean_pairwise_cosine
from recbole_collm.settings import ALIGN_INPUTS


def latent_cosine(model, loader) -> float:
    """The mean over queries of the mean pairwise cosine of the candidates' item latents."""
    values = []
    for batch in loader:
        interaction = batch[0]
        sets = {tuple(c) for c in interaction[CANDIDATES_FIELD].tolist()}
        values += [float(mean_pairwise_cosine(model.item_latents(torch.tensor(candidates)))) for candidates in sets]
    return float(np.mean(values))


def run(dataset: str, inputs: str, valid_rows: int, out: Path, extra: dict) -> dict:
    from recbole.utils import init_logger

    from recbole_collm import Config
    from recbole_collm.quick_start import prepare

    settings = {"stage": "align", "align_inputs": inputs, "eval_rows_limit": valid_rows, "eval_rows_sample": "rows",
                "checkpoint_dir": str(out / "saved" / dataset), "eval_step": 1, "show_progress": False, **extra}
    config = Config(model="ALLMRec", dataset=dataset, config_dict=settings)
    init_logger(config)
    start = time.perf_counter()
    _, (train, valid, _), model, trainer = prepare(config)
    trainer.fit(train, valid, saved=True, show_progress=False)
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        result = trainer.evaluate(valid, load_best_model=True, show_progress=False)
        ranks = model.own_title_rank().cpu().numpy()
        cosine = latent_cosine(model, valid)
    return {"inputs": inputs, "hit@1": float(result["hit@1"]), "hit@10": float(result["hit@10"]),
            "first_hit": result.first_hit.tolist(), "user": valid._dataset.inter_feat[valid._dataset.uid_field].tolist(),
            "latent_cosine": cosine, "own_title_top1": float((ranks == 0).mean()), "own_title_median_rank": float(np.median(ranks)),
            "items": int(len(ranks)), "train_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--valid-rows", type=int, default=600)
    parser.add_argument("--inputs", nargs="+", choices=ALIGN_INPUTS, default=list(ALIGN_INPUTS[::-1]))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "allmrec_align"))
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="settings (yaml values) for every variant")
    args = parse_args(parser)
    out = Path(args.out)
    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    results = [run(args.dataset, inputs, args.valid_rows, out, extra) for inputs in args.inputs]
    reference = results[0]
    print(f"\n{args.dataset}: {len(reference['user'])} validation queries (target + 19 unseen), stage 1 alone")
    print(f"| align_inputs | HR@1 | HR@10 | candidates' latent cosine | own title nearest | own title's median rank (of {reference['items']}) "
          f"| HR@1 − {reference['inputs']} | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        vs = ""
        if r is not reference:
            users = np.asarray(r["user"])
            c = paired_bootstrap_mean(users, np.asarray(r["first_hit"]) == 0, np.asarray(reference["first_hit"]) == 0, "hit@1")
            r["vs_reference"] = {"difference": c.difference, "low": c.low, "high": c.high, "significant": c.significant}
            vs = f"{c.difference:+.4f} [{c.low:+.4f}, {c.high:+.4f}]{'' if c.significant else ' not significant'}"
        print(f"| {r['inputs']} | {fmt(r['hit@1'])} | {fmt(r['hit@10'])} | {fmt(r['latent_cosine'])} | {r['own_title_top1']:.1%} "
              f"| {r['own_title_median_rank']:.0f} | {vs} | {r['train_seconds']:.0f} |")
    out.mkdir(parents=True, exist_ok=True)
    name = "-".join([args.dataset, *args.set]).replace("=", "_")
    (out / f"{name}.json").write_text(json.dumps({"valid_rows": args.valid_rows, "settings": args.set, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
