"""An answer source scripted by directives in the last user turn, so tests need no set-up.

Directives (anywhere in the text): [[tool:NAME {json args}]], [[tools:2]], [[think]], [[status:529]],
[[status:429 retry:7]], [[delay:2.5]], [[break:3]], [[error_event:3]], [[echo]], [[max_tokens]],
[[text:some words]], [[logprobs:-0.1,-2.0]]. A last turn holding tool results is answered
"Tool result received: <first 40 characters of the result>".
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from router.replay.answers import Answer, Fault, ToolCall, UpstreamRequest

_DIRECTIVE = re.compile(r"\[\[(\w+)(?::([^\]]*))?\]\]")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(part.get("text") or part.get("content") or part.get("output") or "")
                        for part in content if isinstance(part, dict))
    return ""


def last_turn(request: UpstreamRequest) -> tuple[str, str | None]:
    """The last user turn's text, and the text of tool results when the turn carries them."""
    body = request.body
    if request.dialect == "openai_responses":
        items = body.get("input")
        if isinstance(items, str):
            return items, None
        items = items if isinstance(items, list) else []
        tool_outputs = [str(item.get("output", "")) for item in items if item.get("type") == "function_call_output"]
        last = items[-1] if items else {}
        if last.get("type") == "function_call_output":
            return "", tool_outputs[-1]
        users = [item for item in items if item.get("role") == "user"]
        return (_text_of(users[-1].get("content")) if users else ""), None
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    conversational = [m for m in messages if m.get("role") != "system"]
    last = conversational[-1] if conversational else {}
    if request.dialect == "openai_chat":
        if last.get("role") == "tool":
            return "", _text_of(last.get("content"))
        users = [m for m in messages if m.get("role") == "user"]
        return (_text_of(users[-1].get("content")) if users else ""), None
    content = last.get("content")
    if isinstance(content, list):
        results = [part for part in content if isinstance(part, dict) and part.get("type") == "tool_result"]
        if results:
            return "", _text_of(results[0].get("content"))
    users = [m for m in conversational if m.get("role") == "user"]
    return (_text_of(users[-1].get("content")) if users else ""), None


class ScriptedSource:
    """Answers from directives; the default answer is `Hello from <model>.`."""

    async def answer(self, request: UpstreamRequest) -> Answer | Fault:
        """The scripted answer or fault."""
        text, tool_result = last_turn(request)
        input_tokens = max(1, len(json.dumps(request.body)) // 4)
        if tool_result is not None:
            return Answer(text=f"Tool result received: {tool_result[:40]}", input_tokens=input_tokens)
        directives = {name: (value or "").strip() for name, value in _DIRECTIVE.findall(text)}
        call_prefix = "toolu_" if request.dialect == "anthropic" else "call_"
        tool_calls: list[ToolCall] = []
        if "tool" in directives:
            name, _, arguments = directives["tool"].partition(" ")
            tool_calls.append(ToolCall(call_prefix + uuid.uuid4().hex[:20], name, json.loads(arguments or "{}")))
        if "tools" in directives:
            for city in ("Paris", "Tokyo")[: int(directives["tools"] or 2)]:
                tool_calls.append(ToolCall(call_prefix + uuid.uuid4().hex[:20], "get_weather", {"city": city}))
        reply = f"Hello from {request.model}."
        if "text" in directives:
            reply = directives["text"]
        if "echo" in directives:
            reply = json.dumps({"model": request.model, "keys": sorted(request.body)})
        if tool_calls:
            reply = "I'll use a tool."
        logprobs = None
        if "logprobs" in directives:
            logprobs = tuple(float(value) for value in directives["logprobs"].split(","))
        answer = Answer(
            text=reply,
            thinking="Let me think." if "think" in directives else None,
            tool_calls=tuple(tool_calls),
            stop="tool_use" if tool_calls else ("max_tokens" if "max_tokens" in directives else "end"),
            input_tokens=input_tokens,
            output_tokens=max(1, len(reply) // 4) + 8 * len(tool_calls),
            logprobs=logprobs,
        )
        return self._fault(directives, answer) or answer

    @staticmethod
    def _fault(directives: dict[str, str], answer: Answer) -> Fault | None:
        if "status" in directives:
            status, _, rest = directives["status"].partition(" ")
            retry = rest.partition("retry:")[2].strip() or None
            return Fault(status=int(status), retry_after=retry)
        if "delay" in directives:
            return Fault(delay_s=float(directives["delay"]), answer=answer)
        if "break" in directives:
            return Fault(break_stream_after=int(directives["break"]), answer=answer)
        if "error_event" in directives:
            return Fault(error_event_after=int(directives["error_event"]), answer=answer)
        return None
