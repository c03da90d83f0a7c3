"""LLM recommenders: CoLLM and its ablations (TALLRec, ICL, UIToken), Prompt4NR, CTRL, A-LLMRec and
CLLM4Rec; their base class is ``recbole_collm.model.abstract_recommender.LLMRecommender``, their parts
are in ``recbole_collm.model.llm``."""
