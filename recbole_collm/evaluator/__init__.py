from recbole_collm.evaluator.collector import CollmCollector
from recbole_collm.evaluator.evaluator import CollmEvaluator
from recbole_collm.evaluator.metrics import UAUC, UNDCG, WGAUC, register_metrics
from recbole_collm.evaluator.subsets import warm_cold_masks

__all__ = ["CollmCollector", "CollmEvaluator", "UAUC", "UNDCG", "WGAUC", "register_metrics", "warm_cold_masks"]
