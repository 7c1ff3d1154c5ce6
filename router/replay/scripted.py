"""An answer source scripted by directives in the last user turn, so tests drive the upstream with no set-up.

Directives (anywhere in the text, several allowed): [[tool:NAME {"json": "args"}]], [[tools:2]], [[think]],
[[status:529]], [[status:429 retry:7]], [[delay:2.5]], [[break:3]], [[error_event:3]], [[echo]],
[[max_tokens]], [[text:any words]], [[logprobs:-0.1,-2.5]]; and, only when the request's model is MODEL
(any model when MODEL is left out): [[weak:MODEL]] (a hedging refusal), [[badtool:MODEL]] (tool calls with
arguments that break their schema), [[fail:MODEL]] or [[fail:MODEL status:529]] (an error, 500 by default).
A last turn made of tool results is answered "Tool result received: <first 40 characters of the first one>".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from router.replay.answers import Answer, AnswerSource, Fault, StopReason, ToolCall, UpstreamRequest
from router.replay.render import new_id

CITIES: Final = ("Paris", "Tokyo", "Oslo", "Lima", "Cairo", "Sydney")
THINKING: Final = "Let me think."
TOOL_TEXT: Final = "I'll use a tool."
WEAK_TEXT: Final = "I'm sorry, but I'm not sure. It might be this, or possibly that; I think it depends."
BAD_ARGUMENTS: Final[Mapping[str, Any]] = MappingProxyType({"unexpected_argument": True})
MODEL_SCOPED: Final = frozenset({"weak", "badtool", "fail"})
_KNOWN: Final = frozenset({"tools", "think", "status", "delay", "break", "error_event", "echo", "max_tokens",
                           "logprobs", *MODEL_SCOPED})
_GENERIC: Final = re.compile(r"\[\[([a-z_]+)(?::([^\]\s]+))?((?:\s+[a-z_]+:[^\]\s]+)*)\s*\]\]")
_TEXT: Final = re.compile(r"\[\[text:(.*?)\]\]", re.DOTALL)
_TOOL: Final = re.compile(r"\[\[tool:([^\s\]{]+)\s*")
_CLOSE: Final = re.compile(r"\s*\]\]")
_TOOL_OUTPUTS: Final = frozenset({"function_call_output", "custom_tool_call_output"})


@dataclass(frozen=True)
class Directive:
    """One `[[name:value key:value]]` directive; `arguments` holds a tool directive's JSON object."""

    name: str
    value: str = ""
    options: tuple[tuple[str, str], ...] = ()
    arguments: dict[str, Any] = field(default_factory=dict)

    def option(self, key: str) -> str | None:
        """The value of a `key:value` option, if given."""
        return next((value for name, value in self.options if name == key), None)


@dataclass(frozen=True)
class Turn:
    """The last user turn: its text (directives included) and the first tool result's text, if any."""

    text: str
    tool_result: str | None = None


def _parse_at(text: str, start: int) -> tuple[Directive, int] | None:
    """The directive starting at `start` and the index after it, or None if it is not one."""
    if text.startswith("[[text:", start):
        match = _TEXT.match(text, start)
        return (Directive("text", match.group(1)), match.end()) if match else None
    if text.startswith("[[tool:", start):
        tool = _TOOL.match(text, start)
        if tool is None:
            return None
        arguments: Any = {}
        end = tool.end()
        if text.startswith("{", end):
            try:
                arguments, end = json.JSONDecoder().raw_decode(text, end)
            except ValueError:
                return None
        close = _CLOSE.match(text, end)
        if close is None or not isinstance(arguments, dict):
            return None
        return Directive("tool", tool.group(1), arguments=arguments), close.end()
    match = _GENERIC.match(text, start)
    if match is None or match.group(1) not in _KNOWN:
        return None
    pairs = (part.partition(":") for part in match.group(3).split())
    options = tuple((key, value) for key, _, value in pairs)
    return Directive(match.group(1), match.group(2) or "", options), match.end()


def parse_directives(text: str) -> tuple[list[Directive], str]:
    """The directives found in a text, and the text without them (stripped)."""
    found: list[Directive] = []
    kept: list[str] = []
    cursor = position = 0
    while (start := text.find("[[", position)) >= 0:
        parsed = _parse_at(text, start)
        if parsed is None:
            position = start + 2
            continue
        directive, end = parsed
        found.append(directive)
        kept.append(text[cursor:start])
        cursor = position = end
    kept.append(text[cursor:])
    return found, "".join(kept).strip()


def content_text(content: Any) -> str:
    """The text of a message content: a string, or the texts of its parts (nested tool_result content too)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping):
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "tool_result":
                texts.append(content_text(part.get("content")))
    return "\n".join(texts)


def _anthropic_turn(body: Mapping[str, Any]) -> Turn:
    """The last `role: user` message; tool_result blocks make it a tool-result turn."""
    messages = body.get("messages")
    users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"] if isinstance(
        messages, list) else []
    if not users:
        return Turn("")
    content = users[-1].get("content")
    blocks = content if isinstance(content, list) else []
    results = [b for b in blocks if isinstance(b, Mapping) and b.get("type") == "tool_result"]
    first = content_text(results[0].get("content")) if results else None
    return Turn(content_text(content), first)


def _trailing(items: Sequence[Any], last: int, matches: Any) -> list[Mapping[str, Any]]:
    """The run of items ending at index `last` that all satisfy `matches`."""
    start = last
    while start > 0 and matches(items[start - 1]):
        start -= 1
    return list(items[start:last + 1])


def _chat_turn(body: Mapping[str, Any]) -> Turn:
    """The last user or tool message; trailing tool messages make a tool-result turn."""
    messages = body.get("messages")
    messages = [m for m in messages if isinstance(m, Mapping)] if isinstance(messages, list) else []
    indexes = [i for i, m in enumerate(messages) if m.get("role") in ("user", "tool")]
    if not indexes:
        return Turn("")
    last = messages[indexes[-1]]
    if last.get("role") != "tool":
        return Turn(content_text(last.get("content")))
    results = _trailing(messages, indexes[-1], lambda m: m.get("role") == "tool")
    texts = [content_text(m.get("content")) for m in results]
    return Turn("\n".join(texts), texts[0])


def _responses_turn(body: Mapping[str, Any]) -> Turn:
    """The last input item; trailing function_call_output items make a tool-result turn."""
    items = body.get("input")
    if isinstance(items, str):
        return Turn(items)
    items = [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []
    if not items:
        return Turn("")
    if items[-1].get("type") in _TOOL_OUTPUTS:
        results = _trailing(items, len(items) - 1, lambda i: i.get("type") in _TOOL_OUTPUTS)
        texts = [content_text(i.get("output")) for i in results]
        return Turn("\n".join(texts), texts[0])
    users = [i for i in items if i.get("role") == "user"]
    last = items[-1] if "role" in items[-1] else (users[-1] if users else {})
    return Turn(content_text(last.get("content")))


def last_turn(request: UpstreamRequest) -> Turn:
    """The last user turn of a request, read the way its dialect carries it."""
    if request.dialect == "anthropic":
        return _anthropic_turn(request.body)
    if request.dialect == "openai_chat":
        return _chat_turn(request.body)
    return _responses_turn(request.body)


def _number(value: str | None, default: float) -> float:
    """A directive's number, or the default when missing or malformed."""
    try:
        return float(value) if value else default
    except ValueError:
        return default


class ScriptedSource(AnswerSource):
    """Answers from directives in the last user turn; by default `Hello from <model>.`."""

    async def answer(self, request: UpstreamRequest) -> Answer | Fault:
        """The scripted answer, wrapped in a Fault when a fault directive is present."""
        turn = last_turn(request)
        found, stripped = parse_directives(turn.text)
        directives = [d for d in found if d.name not in MODEL_SCOPED or d.value in ("", request.model)]
        named = {d.name: d for d in directives}
        calls = self._tool_calls(request, directives, broken="badtool" in named)
        text = f"Hello from {request.model}."
        if "text" in named:
            text = named["text"].value
        elif "echo" in named:
            echo = {"model": request.model, "keys": list(request.body), "text": stripped}
            text = json.dumps(echo, separators=(",", ":"))
        elif "weak" in named:
            text = WEAK_TEXT
        elif calls:
            text = TOOL_TEXT
        elif turn.tool_result is not None:
            text = f"Tool result received: {parse_directives(turn.tool_result)[1][:40]}"
        stop: StopReason = "max_tokens" if "max_tokens" in named else "tool_use" if calls else "end"
        thinking = THINKING if "think" in named else None
        logprobs = None
        if "logprobs" in named:
            values = [_number(value, 0.0) for value in named["logprobs"].value.split(",") if value]
            logprobs = tuple(min(0.0, value) for value in values)
        output_tokens = 1 + len(text) // 4 + len(thinking or "") // 4
        output_tokens += sum(5 + len(json.dumps(call.arguments)) // 4 for call in calls)
        answer = Answer(text=text, thinking=thinking, tool_calls=tuple(calls), stop=stop,
                        input_tokens=max(1, len(json.dumps(request.body)) // 4), output_tokens=output_tokens,
                        logprobs=logprobs)
        return self._fault(named, answer) or answer

    @staticmethod
    def _tool_calls(request: UpstreamRequest, directives: Sequence[Directive], *,
                    broken: bool) -> list[ToolCall]:
        """The tool calls asked for, ids in the request's dialect (schema-breaking arguments if broken)."""
        prefix, length = ("toolu_01", 22) if request.dialect == "anthropic" else ("call_", 24)
        calls: list[ToolCall] = []
        for directive in directives:
            if directive.name == "tool":
                arguments = dict(BAD_ARGUMENTS if broken else directive.arguments)
                calls.append(ToolCall(new_id(prefix, length), directive.value, arguments))
            elif directive.name == "tools":
                for number in range(max(0, int(_number(directive.value, 2)))):
                    city = CITIES[number % len(CITIES)]
                    arguments = dict(BAD_ARGUMENTS) if broken else {"city": city}
                    calls.append(ToolCall(new_id(prefix, length), "get_weather", arguments))
        return calls

    @staticmethod
    def _fault(named: Mapping[str, Directive], answer: Answer) -> Fault | None:
        """A Fault carrying the answer when any fault directive is present."""
        status = named.get("status")
        delay = named.get("delay")
        broken = named.get("break")
        error = named.get("error_event")
        fail = named.get("fail")
        if status is None and delay is None and broken is None and error is None and fail is None:
            return None
        code = int(_number(status.value, 500)) if status else None
        if fail is not None:
            code = int(_number(fail.option("status"), 500))
        return Fault(
            status=code,
            retry_after=status.option("retry") if status else None,
            delay_s=_number(delay.value, 0.0) if delay else 0.0,
            break_stream_after=int(_number(broken.value, 1)) if broken else None,
            error_event_after=int(_number(error.value, 1)) if error else None,
            answer=answer,
        )
