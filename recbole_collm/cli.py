"""The command line: ``python run_recbole_collm.py`` in a checkout, ``recbole-collm`` or
``python -m recbole_collm`` where the wheel is installed.

    recbole-collm --model=MF --dataset=ml-100k [--config_files=a.yaml,gpu.yaml] [--key=value ...]

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
    from recbole_collm import run_recbole_collm
    from recbole_collm.errors import InputError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", type=str, default="MF", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="comma-separated yaml files or named settings")
    args, _ = parser.parse_known_args()  # the rest is read by RecBole's Config from sys.argv
    config_files = [f for f in args.config_files.split(",") if f] if args.config_files else None
    try:
        run_recbole_collm(model=args.model, dataset=args.dataset, config_file_list=config_files)
    except (InputError, FloatingPointError) as err:
        if os.environ.get("RECBOLE_COLLM_DEBUG"):
            raise
        prog = os.path.splitext(os.path.basename(sys.argv[0]))[0]
        print(f"{prog if prog not in ('', '__main__') else 'recbole-collm'}: error: {err}", file=sys.stderr)
        return 2
    return 0
