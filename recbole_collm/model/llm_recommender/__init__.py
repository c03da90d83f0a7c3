"""LLM recommenders: CoLLM and its ablations (TALLRec, ICL, UIToken), Prompt4NR, CTRL, A-LLMRec and CLLM4Rec; their parts are in ``llm``."""
