"""The LLM machinery the LLM recommenders are built from: the backbone (loading, quantization, LoRA)
and its precision, prompts and their batching, prompts with vectors in token slots, the projectors
that fill the slots, the shared-prefix encoder with its prefix store, LoRA on the top layers, title
embeddings, and the tunable parts' save/load."""
