"""The parts of the LLM recommenders: the backbone (loading, quantization, LoRA), prompts, prompt
batching, the collaborative sources and the projector that fill the ID slots, and the shared-prefix
encoder with its prefix store."""
