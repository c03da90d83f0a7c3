"""Train and evaluate a model through the plugin:

    python run_recbole_collm.py --model=MF --dataset=ml-100k [--config_files=a.yaml,b.yaml] [--key=value ...]

Any RecBole model name works too; extra ``--key=value`` pairs override the yaml (RecBole's rule).
Bad input (a missing file, an unknown key, a wrong label, ...) ends with one line on stderr and
exit status 2; set RECBOLE_COLLM_DEBUG=1 for the full traceback.
"""
import argparse
import os
import sys

from recbole_collm import run_recbole_collm
from recbole_collm.errors import InputError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", type=str, default="MF", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="comma-separated yaml files")
    args, _ = parser.parse_known_args()  # the rest is read by RecBole's Config from sys.argv
    config_files = [f for f in args.config_files.split(",") if f] if args.config_files else None
    for file in config_files or []:
        if not os.path.isfile(file):
            print(f"run_recbole_collm: error: --config_files: '{file}' not found", file=sys.stderr)
            return 2
    try:
        run_recbole_collm(model=args.model, dataset=args.dataset, config_file_list=config_files)
    except (InputError, FloatingPointError) as err:
        if os.environ.get("RECBOLE_COLLM_DEBUG"):
            raise
        print(f"run_recbole_collm: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
