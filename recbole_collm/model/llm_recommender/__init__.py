"""LLM recommenders: CoLLM and its ablations (TALLRec, ICL, UIToken); their parts are in ``llm``."""
