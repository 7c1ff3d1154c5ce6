"""Helpers of the budget and spend tests: prices that make a short request cost a few cents."""

from __future__ import annotations

USD_PER_TOKEN = 0.001
PRICES = {model: {"prices": {"input": USD_PER_TOKEN * 1e6, "output": USD_PER_TOKEN * 1e6}}
          for model in ("claude-haiku-4-5", "gpt-4o-mini", "claude-opus-4-8")}
"""One token costs a tenth of a cent on both models: a short request costs a few cents."""
