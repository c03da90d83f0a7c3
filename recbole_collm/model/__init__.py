"""Plugin models by type, one per file (RecBole's layout): ``general_recommender`` (MF, LightGCN),
``sequential_recommender`` (SASRec, DIN), ``llm_recommender`` (CoLLM, TALLRec, ICL, UIToken, and
their parts in ``llm_recommender/llm``); ``pointwise`` and ``candidates`` are what the labeled
models share. ``recbole_collm.utils.get_model`` finds a model by name."""
