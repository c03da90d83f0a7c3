"""Plugin models by type, one per file (RecBole's layout): ``general_recommender`` (MF, LightGCNCTR,
ItemRate), ``sequential_recommender`` (SASRecCTR, DINCTR), ``llm_recommender`` (CoLLM, TALLRec, ICL, UIToken,
Prompt4NR, CTRL, A-LLMRec, CLLM4Rec). Beside them, as RecBole keeps ``abstract_recommender``: the base
class of every LLM model (``abstract_recommender``), what a collaborative source offers them
(``cf_source``), the LLM machinery they are built from (``llm``: loading, precision, prompts, the
shared-prefix engine, projectors, adapters), and what the labeled models share (``pointwise``,
``candidates``). ``recbole_collm.utils.get_model`` finds a model by name."""
