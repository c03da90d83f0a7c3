"""The command line: ``python run_recbole_collm.py`` in a checkout, ``recbole-collm`` or
``python -m recbole_collm`` where the wheel is installed.

    recbole-collm --model=MF --dataset=ml-100k [--config_files=a.yaml,gpu.yaml] [--key=value ...]
    recbole-collm score --checkpoint saved/X.pth --pairs pairs.tsv --out scores.tsv
    recbole-collm recommend --checkpoint saved/X.pth --users users.txt --candidates pop100 --topk 10 --out recs.tsv

Any RecBole model name works too; extra ``--key=value`` pairs override the yaml (RecBole's rule);
``--config_files`` takes yaml paths or the plugin's named settings (``gpu.yaml``,
``split/global_time.yaml``). Bad input (a missing file, an unknown key, a wrong value, ...) ends
with one line on stderr and exit status 2; set RECBOLE_COLLM_DEBUG=1 for the full traceback.
"""
from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    from recbole_collm.errors import InputError

    if len(sys.argv) > 1 and sys.argv[1] in ("score", "recommend"):
        return _guarded(lambda: _serve(sys.argv[1], sys.argv[2:]), InputError)
    return _guarded(_train, InputError)


def _serve(command: str, argv: list[str]) -> None:
    from recbole_collm.scoring import recommend, score_file

    parser = argparse.ArgumentParser(prog=f"recbole-collm {command}")
    parser.add_argument("--checkpoint", required=True, help="a .pth checkpoint this plugin saved")
    parser.add_argument("--out", required=True)
    parser.add_argument("--llm_compute_dtype", default=None, help="an LLM model's compute dtype "
                        "(auto | float32 | bfloat16 | float16); default: the training run's")
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


def _guarded(run, errors) -> int:
    """``run()``; bad input is one line on stderr and exit status 2."""
    try:
        run()
    except (errors, FloatingPointError) as err:
        if os.environ.get("RECBOLE_COLLM_DEBUG"):
            raise
        prog = os.path.splitext(os.path.basename(sys.argv[0]))[0]
        print(f"{prog if prog not in ('', '__main__') else 'recbole-collm'}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _train() -> None:
    from recbole_collm.quick_start import run

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
    config_files = [f for f in args.config_files.split(",") if f] if args.config_files else None
    sys.argv = [a for a in sys.argv if not a.split("=")[0] in ("--nproc", "--world_size", "--ip", "--port", "--group_offset")]
    run(args.model, args.dataset, config_files, None, True, args.nproc, args.world_size, args.ip, args.port, args.group_offset)
