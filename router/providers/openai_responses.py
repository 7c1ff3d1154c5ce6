"""The OpenAI Responses wire: only ever relayed raw to a Responses client, decoded for usage and the answer."""

from __future__ import annotations

from typing import Any

import orjson

from router.costs import TokenUsage
from router.protocol.sse import SSEEvent
from router.providers.wire import EARLY_END, Completion, MalformedAnswer, StreamMode
from router.types import Dialect, Endpoint, JSONObject

_FINAL = ("response.completed", "response.incomplete")
_FAILED = ("response.failed", "error")


def responses_to_hub(response: JSONObject) -> JSONObject:
    """A Responses API response object as a hub message (for the cache, the log and the ledger)."""
    content: list[JSONObject] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    content.append({"type": "text", "text": str(part.get("text", ""))})
        elif item.get("type") == "function_call":
            try:
                arguments: Any = orjson.loads(str(item.get("arguments") or "{}"))
            except orjson.JSONDecodeError:
                arguments = {}
            content.append({"type": "tool_use", "id": item.get("call_id"), "name": item.get("name"),
                            "input": arguments})
    usage = _usage(response)
    if any(block["type"] == "tool_use" for block in content):
        stop = "tool_use"
    elif response.get("status") == "incomplete":
        stop = "max_tokens"
    else:
        stop = "end_turn"
    hub_usage = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                 "cache_creation_input_tokens": 0}
    if usage is not None:
        hub_usage.update(input_tokens=usage.uncached_input_tokens, output_tokens=usage.output_tokens,
                         cache_read_input_tokens=usage.cache_read_tokens)
    return {"id": str(response.get("id", "")), "type": "message", "role": "assistant",
            "model": response.get("model"), "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": hub_usage}


def _usage(response: JSONObject) -> TokenUsage | None:
    usage = response.get("usage")
    return TokenUsage.from_openai_responses(usage) if isinstance(usage, dict) else None


class ResponsesStreamDecoder:
    """Responses events: the final `response.*` event holds the whole answer; the rest pass undecoded."""

    def __init__(self, mode: StreamMode) -> None:
        self._mode = mode
        self._final: JSONObject | None = None
        self._error: str | None = None

    def feed(self, event: SSEEvent) -> list[JSONObject]:
        """Decode the terminal events only."""
        name = event.event
        if not event.data or (name is not None and name not in _FINAL and name not in _FAILED):
            return []
        try:
            data: Any = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            raise MalformedAnswer(f"a Responses stream event is not JSON: {exc}") from exc
        kind = data.get("type") if isinstance(data, dict) else None
        if kind in _FINAL and isinstance(data.get("response"), dict):
            self._final = data["response"]
        elif kind in _FAILED:
            response = data.get("response") if isinstance(data.get("response"), dict) else data
            error = response.get("error") if isinstance(response.get("error"), dict) else response
            self._error = str(error.get("message") or "upstream error")
        return []

    def finish(self) -> list[JSONObject]:
        """Nothing to close."""
        return []

    def completion(self) -> Completion:
        """The answer of the final event."""
        if self._error is not None:
            return Completion(None, None, error=self._error)
        if self._final is None:
            return Completion(None, None, error=EARLY_END)
        return Completion(responses_to_hub(self._final), _usage(self._final))


class ResponsesWire:
    """OpenAI Responses (`/v1/responses`), relayed raw; never a translation target."""

    dialect = Dialect.OPENAI_RESPONSES

    def path(self, endpoint: Endpoint, query: str) -> str:
        """One path."""
        return "/v1/responses"

    def build(self, hub_request: JSONObject, model: str) -> JSONObject:
        """Never called: requests reach a Responses upstream only in their own dialect."""
        raise MalformedAnswer("the Responses wire is only relayed, never translated to")

    def decode(self, data: object) -> Completion:
        """A response object."""
        if not isinstance(data, dict) or data.get("object") != "response":
            raise MalformedAnswer("the Responses answer is not a response object")
        return Completion(responses_to_hub(data), _usage(data))

    def decoder(self, mode: StreamMode) -> ResponsesStreamDecoder:
        """A decoder for one Responses stream."""
        return ResponsesStreamDecoder(mode)
