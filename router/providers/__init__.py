"""Outbound LLM I/O: providers and the registry that resolves a model to one."""
