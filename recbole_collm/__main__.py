"""``python -m recbole_collm --model=CoLLM --dataset=ml-100k``: see :mod:`recbole_collm.cli`."""
import sys

from recbole_collm.cli import main

sys.exit(main())
