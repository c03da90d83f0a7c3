"""The command line: ``python run_recbole_collm.py`` in a checkout, ``recbole-collm`` or
``python -m recbole_collm`` where the wheel is installed.

    recbole-collm --model=MF --dataset=ml-100k [--config_files=a.yaml,gpu.yaml] [--key=value ...]
    recbole-collm score --checkpoint saved/X.pth --pairs pairs.tsv --out scores.tsv
    recbole-collm recommend --checkpoint saved/X.pth --users users.txt --candidates pop100 --topk 10 --out recs.tsv
    recbole-collm tune --model=CoLLM --dataset=ml-100k --params_file=benchmarks/hyper/collm_cie.hyper [--key=value ...]

Any RecBole model name works too; extra ``--key=value`` pairs override the yaml (RecBole's rule);
``--config_files`` takes yaml paths or the plugin's named settings (``gpu.yaml``,
``split/global_time.yaml``). Bad input (a missing file, an unknown key, a wrong value, ...) ends
with one line on stderr and exit status 2; set RECBOLE_COLLM_DEBUG=1 for the full traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from functools import partial

from recbole.trainer import HyperTuning

from recbole_collm.errors import InputError, MissingInputError
from recbole_collm.quick_start import format_result, objective_function, run
from recbole_collm.scoring import check_positive, recommend, score_file
from recbole_collm.settings import DTYPES


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("score", "recommend"):
        return _guarded(lambda: _serve(sys.argv[1], sys.argv[2:]), InputError, "nothing was written")
    if len(sys.argv) > 1 and sys.argv[1] == "tune":
        return _guarded(lambda: _tune(sys.argv[2:]), InputError, "finished trials are in the log")
    return _guarded(_train, InputError, "the same command with --resume=auto continues from the last checkpoint")


def _serve(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"recbole-collm {command}")
    parser.add_argument("--checkpoint", required=True, help="a .pth checkpoint this plugin saved")
    parser.add_argument("--out", required=True)
    parser.add_argument("--llm_compute_dtype", default=None, help="an LLM model's compute dtype "
                        f"({' | '.join(DTYPES)}); default: the training run's")
    if command == "score":
        parser.add_argument("--pairs", required=True, help="tab-separated user, item[, timestamp] tokens")
        parser.add_argument("--batch_size", type=int, default=None, help="default: the checkpoint's eval_batch_size")
    else:
        parser.add_argument("--users", required=True, help="one user token per line")
        parser.add_argument("--candidates", default="pop100", help="popN, or a file of item tokens (one per line)")
        parser.add_argument("--topk", type=int, default=10)
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config would read the options as settings
    if command == "score":
        count = score_file(args.checkpoint, args.pairs, args.out, args.batch_size, compute_dtype=args.llm_compute_dtype)
        print(f"scored {count} pairs -> {args.out}")
    else:
        count = recommend(args.checkpoint, args.users, args.candidates, args.topk, args.out, compute_dtype=args.llm_compute_dtype)
        print(f"wrote {count} recommendations -> {args.out}")


def _tune(argv: list[str]) -> None:
    """RecBole's hyper-parameter search (``HyperTuning``, hyperopt) over the plugin's runs: each
    trial is :func:`recbole_collm.quick_start.objective_function` (validation only); the results
    are written as RecBole's ``run_hyper.py`` writes them."""
    parser = argparse.ArgumentParser(prog="recbole-collm tune")
    parser.add_argument("--model", "-m", required=True)
    parser.add_argument("--dataset", "-d", required=True)
    parser.add_argument("--params_file", required=True, help="RecBole's format: one 'name choice [a,b]' / 'name loguniform low,high' per line")
    parser.add_argument("--config_files", default=None, help="comma-separated yaml files or named settings, fixed for every trial")
    parser.add_argument("--algo", default="exhaustive", choices=("exhaustive", "random", "bayes"))
    parser.add_argument("--max_evals", type=int, default=100, help="trials for random/bayes (exhaustive: the whole grid)")
    parser.add_argument("--early_stop", type=int, default=10, help="stop after this many trials without a better validation score")
    parser.add_argument("--output_file", default=None, help="default: hyper_<model>.result")
    args, rest = parser.parse_known_args(argv)
    if not os.path.isfile(args.params_file):
        raise MissingInputError(f"--params_file: '{args.params_file}' not found")
    for option in ("max_evals", "early_stop"):
        check_positive(f"--{option}", getattr(args, option))
    sys.argv = sys.argv[:1] + rest  # the remaining --key=value pairs: settings every trial shares (RecBole's Config reads them)
    config_files = _config_files(args.config_files)
    objective = partial(objective_function, model=args.model, dataset=args.dataset)
    tuner = HyperTuning(objective, params_file=args.params_file, fixed_config_file_list=config_files, algo=args.algo,
                        max_evals=args.max_evals, early_stop=args.early_stop)
    tuner.run()
    output = args.output_file or f"hyper_{args.model}.result"
    tuner.export_result(output_file=output)
    best = tuner.params2result[tuner.params2str(tuner.best_params)]
    print(f"best params: {tuner.best_params}")
    print(f"best valid result: {format_result(best['best_valid_result'])}")
    print(f"all trials -> {output}")


def _config_files(value: str | None) -> list[str] | None:
    """``--config_files``: comma-separated yaml paths or named settings."""
    return [f for f in value.split(",") if f] if value else None


def _guarded(run, errors, on_interrupt: str) -> int:
    """``run()``; bad input is one line on stderr and exit status 2; Ctrl-C one line saying what
    continues (``on_interrupt``) and exit status 130."""
    prog = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    prog = prog if prog not in ("", "__main__") else "recbole-collm"
    try:
        run()
    except (errors, FloatingPointError) as err:
        if os.environ.get("RECBOLE_COLLM_DEBUG"):
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if os.environ.get("RECBOLE_COLLM_DEBUG"):
            raise
        print(f"{prog}: interrupted; {on_interrupt}", file=sys.stderr)
        return 130
    return 0


def _train() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", type=str, default="MF", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="comma-separated yaml files or named settings")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (RecBole's DDP)")
    parser.add_argument("--world_size", type=int, default=-1, help="processes over all machines")
    parser.add_argument("--ip", type=str, default="localhost", help="the address of process 0's machine")
    parser.add_argument("--port", type=str, default="5678")
    parser.add_argument("--group_offset", type=int, default=0, help="this machine's first process rank")
    args, _ = parser.parse_known_args()  # the rest is read by RecBole's Config from sys.argv
    config_files = _config_files(args.config_files)
    sys.argv = [a for a in sys.argv if not a.split("=")[0] in ("--nproc", "--world_size", "--ip", "--port", "--group_offset")]
    run(args.model, args.dataset, config_files, None, True, args.nproc, args.world_size, args.ip, args.port, args.group_offset)
