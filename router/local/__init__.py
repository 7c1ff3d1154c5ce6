"""Real local models for trying and testing the cascade: pinned GGUF weights served by llama.cpp (xllamacpp)."""
