"""Plugin models, one per file; ``recbole_collm.utils.get_model`` finds them by name."""
