"""An OpenAI Responses API request as an Anthropic Messages request (the hub format)."""

from __future__ import annotations

import json
import re
from typing import Any

from router.types import JSONObject

DEFAULT_MAX_TOKENS = 4096
NAMESPACE_SEPARATOR = "__"
_EFFORT_BUDGETS = (("low", 1024), ("medium", 4096), ("high", 16384), ("xhigh", 32768), ("max", 32768))
_DATA_URL = re.compile(r"^data:([^;,]+)?(;base64)?,(.*)$", re.DOTALL)
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def namespaced_name(namespace: str | None, name: str) -> str:
    """The flat Anthropic tool name of a function inside a Responses `namespace` tool."""
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace and namespace != name else name


def _is_tool(tool: Any, kind: str) -> bool:
    return isinstance(tool, dict) and tool.get("type") == kind and isinstance(tool.get("name"), str)


def namespace_map(tools: Any) -> dict[str, tuple[str, str]]:
    """Flat tool name → (namespace, inner name) for every function inside the request's namespace tools."""
    result: dict[str, tuple[str, str]] = {}
    for tool in tools if isinstance(tools, list) else []:
        if not _is_tool(tool, "namespace"):
            continue
        for inner in tool.get("tools") or []:
            if _is_tool(inner, "function"):
                result[namespaced_name(tool["name"], inner["name"])] = (tool["name"], inner["name"])
    return result


def _text(value: Any) -> JSONObject | None:
    return {"type": "text", "text": value} if isinstance(value, str) and value.strip() else None


def _image(part: JSONObject) -> JSONObject | None:
    url = part.get("image_url")
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str) or not url:
        return None
    match = _DATA_URL.match(url)
    if match is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, is_base64, data = match.groups()
    if not is_base64 or media_type not in _IMAGE_TYPES:
        return None
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _document(part: JSONObject) -> JSONObject | None:
    url = part.get("file_url")
    if isinstance(url, str) and url:
        return {"type": "document", "source": {"type": "url", "url": url}}
    data = part.get("file_data")
    match = _DATA_URL.match(data) if isinstance(data, str) else None
    if match is None or match.group(1) != "application/pdf" or not match.group(2):
        return None
    source = {"type": "base64", "media_type": "application/pdf", "data": match.group(3)}
    document: JSONObject = {"type": "document", "source": source}
    if isinstance(part.get("filename"), str):
        document["title"] = part["filename"]
    return document


def _content_blocks(content: Any) -> list[JSONObject]:
    """Anthropic blocks for a message's content (a string or a list of input/output parts)."""
    if isinstance(content, str):
        block = _text(content)
        return [block] if block else []
    blocks: list[JSONObject] = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "input_image":
            converted = _image(part)
        elif kind == "input_file":
            converted = _document(part)
        elif kind == "refusal":
            converted = _text(part.get("refusal"))
        else:
            converted = _text(part.get("text"))
        if converted is not None:
            blocks.append(converted)
    return blocks


def _system_text(content: Any) -> str:
    return "\n\n".join(str(block["text"]) for block in _content_blocks(content) if block["type"] == "text")


def _tool_input(arguments: Any) -> JSONObject:
    """Function-call arguments as a tool_use input: the JSON object, else the raw text under `arguments`."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"arguments": arguments}


def _tool_result(item: JSONObject) -> JSONObject:
    output = item.get("output")
    result: JSONObject = {"type": "tool_result", "tool_use_id": str(item.get("call_id") or "")}
    if isinstance(output, str):
        result["content"] = output
    elif isinstance(output, list):
        result["content"] = _content_blocks(output)
    elif output is not None:
        result["content"] = json.dumps(output, ensure_ascii=False)
    return result


def _conversation(items: list[Any], system: list[str]) -> list[JSONObject]:
    """Alternating Anthropic messages from Responses input items; system/developer text goes to `system`."""
    turns: list[tuple[str, list[JSONObject]]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        role = item.get("role")
        if kind == "message" and role in ("system", "developer"):
            text = _system_text(item.get("content"))
            if text:
                system.append(text)
            continue
        if kind == "message" and role in ("user", "assistant"):
            turn = (str(role), _content_blocks(item.get("content")))
        elif kind == "function_call":
            name = namespaced_name(item.get("namespace"), str(item.get("name") or ""))
            turn = ("assistant", [{"type": "tool_use", "id": str(item.get("call_id") or item.get("id") or ""),
                                   "name": name, "input": _tool_input(item.get("arguments"))}])
        elif kind == "function_call_output":
            turn = ("user", [_tool_result(item)])
        else:
            continue
        if not turn[1]:
            continue
        if turns and turns[-1][0] == turn[0]:
            turns[-1][1].extend(turn[1])
        else:
            turns.append(turn)
    messages = []
    for role, blocks in turns:
        if role == "user":
            blocks = ([b for b in blocks if b["type"] == "tool_result"]
                      + [b for b in blocks if b["type"] != "tool_result"])
        messages.append({"role": role, "content": blocks})
    return messages


def _function_tool(tool: JSONObject, name: str) -> JSONObject:
    schema = tool.get("parameters")
    if not isinstance(schema, dict) or not schema:
        schema = {"type": "object", "properties": {}}
    converted: JSONObject = {"name": name, "input_schema": schema}
    if isinstance(tool.get("description"), str) and tool["description"]:
        converted["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        converted["strict"] = tool["strict"]
    return converted


def _tools(tools: Any) -> list[JSONObject]:
    """Anthropic tools: function tools kept, namespace tools flattened, every other kind dropped."""
    converted: list[JSONObject] = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        if _is_tool(tool, "function"):
            converted.append(_function_tool(tool, tool["name"]))
        elif _is_tool(tool, "namespace"):
            for inner in tool.get("tools") or []:
                if _is_tool(inner, "function"):
                    converted.append(_function_tool(inner, namespaced_name(tool["name"], inner["name"])))
    return converted


def _tool_choice(choice: Any, parallel: Any) -> JSONObject | None:
    converted: JSONObject | None = None
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        converted = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        converted = {"type": "tool", "name": namespaced_name(choice.get("namespace"), str(choice["name"]))}
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        converted = {"type": "any" if choice.get("mode") == "required" else "auto"}
    elif choice == "auto" or parallel is False:
        converted = {"type": "auto"}
    if converted is not None and parallel is False:
        converted["disable_parallel_tool_use"] = True
    return converted


def _thinking_budget(reasoning: Any) -> int | None:
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    return next((budget for name, budget in _EFFORT_BUDGETS if name == effort), None)


def _in_tool_loop(messages: list[JSONObject]) -> bool:
    """Whether the last assistant turn called tools (its thinking was dropped, so thinking must stay off)."""
    for message in reversed(messages):
        if message["role"] == "assistant":
            return any(block.get("type") == "tool_use" for block in message["content"])
    return False


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def responses_request_to_anthropic(body: JSONObject) -> JSONObject:
    """A Responses API request as an Anthropic Messages request; ValueError for what cannot be served."""
    if body.get("previous_response_id"):
        raise ValueError("previous_response_id is not supported by this router: send the full conversation "
                         "in `input` (store: false)")
    if body.get("conversation"):
        raise ValueError("conversation is not supported by this router: send the full conversation "
                         "in `input`")
    system: list[str] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append(instructions)
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        messages: list[JSONObject] = [{"role": "user", "content": raw_input}]
    elif isinstance(raw_input, list):
        messages = _conversation(raw_input, system)
    else:
        raise ValueError("input must be a string or a list of input items")
    max_tokens = body.get("max_output_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
        max_tokens = DEFAULT_MAX_TOKENS
    result: JSONObject = {"model": body.get("model"), "messages": messages, "max_tokens": max_tokens}
    if system:
        blocks = [{"type": "text", "text": text} for text in system]
        result["system"] = system[0] if len(system) == 1 else blocks
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if tools:
        result["tools"] = tools
        if choice is not None:
            result["tool_choice"] = choice
    budget = _thinking_budget(body.get("reasoning"))
    forced = choice is not None and choice["type"] in ("any", "tool")
    if budget is not None and not (tools and forced) and not _in_tool_loop(messages):
        result["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if max_tokens <= budget:
            result["max_tokens"] = budget + max_tokens
    temperature, top_p = _number(body.get("temperature")), _number(body.get("top_p"))
    if "thinking" in result:
        temperature = None
        top_p = top_p if top_p is not None and top_p >= 0.95 else None
    if temperature is not None:
        result["temperature"] = temperature
    elif top_p is not None:
        result["top_p"] = top_p
    text_format = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(text_format, dict) and text_format.get("type") == "json_schema":
        schema = text_format.get("schema")
        if isinstance(schema, dict):
            result["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    metadata = body.get("metadata")
    user_id = body.get("user")
    if not isinstance(user_id, str) and isinstance(metadata, dict):
        user_id = metadata.get("user_id")
    if isinstance(user_id, str) and user_id:
        result["metadata"] = {"user_id": user_id}
    if body.get("stream") is True:
        result["stream"] = True
    return result
