"""recbole-collm: CoLLM (collaborative embeddings in an LLM's token space) as a RecBole plugin.

Importing the package applies the compatibility shims (``recbole_collm.compat``) and registers
the plugin's metrics with RecBole's evaluator.
"""
from recbole_collm import compat

compat.apply()

from recbole_collm.evaluator.metrics import register_metrics  # noqa: E402

register_metrics()

from recbole_collm.config import Config  # noqa: E402
from recbole_collm.quick_start import load_data_and_model, run_recbole_collm  # noqa: E402
from recbole_collm.restore import build_model  # noqa: E402
from recbole_collm.utils import get_model, get_trainer  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Config", "build_model", "get_model", "get_trainer", "load_data_and_model", "run_recbole_collm"]
