"""Plugin models by type, one per file (RecBole's layout): ``general_recommender`` (MF, LightGCNCTR),
``sequential_recommender`` (SASRecCTR, DINCTR), ``llm_recommender`` (CoLLM, TALLRec, ICL, UIToken, Prompt4NR, CTRL, and
their parts in ``llm_recommender/llm``); ``pointwise`` and ``candidates`` are what the labeled
models share. ``recbole_collm.utils.get_model`` finds a model by name."""
