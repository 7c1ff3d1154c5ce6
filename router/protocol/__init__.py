"""Wire formats of the three dialects and pure conversions between them (Anthropic Messages is the hub)."""
