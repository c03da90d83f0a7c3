"""Train and evaluate a model through the plugin (the same command as ``recbole-collm`` and
``python -m recbole_collm``; see ``recbole_collm/cli.py``):

    python run_recbole_collm.py --model=MF --dataset=ml-100k [--config_files=a.yaml,gpu.yaml] [--key=value ...]
"""
import sys

from recbole_collm.cli import main

if __name__ == "__main__":
    sys.exit(main())
