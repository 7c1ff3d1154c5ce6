"""CascadeFlow Router: a transparent LLM routing proxy."""

__version__ = "0.1.0"
