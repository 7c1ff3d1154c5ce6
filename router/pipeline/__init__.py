"""The one pipeline of every client call: cache → rule → predict → draft → verify → serve → record."""

from router.pipeline.flow import Pipeline, Steps

__all__ = ["Pipeline", "Steps"]
