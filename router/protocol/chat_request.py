"""Request conversion between OpenAI Chat Completions and Anthropic Messages (the hub format)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

from router.protocol.chat_response import as_object, chat_tool_calls, tool_use_block
from router.types import JSONObject

DEFAULT_MAX_TOKENS: Final = 4096
EFFORT_BUDGETS: Final = MappingProxyType({"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768})
_BILLING_PREFIX: Final = "x-anthropic-billing-header:"
_MEDIA_ALIASES: Final = MappingProxyType({"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"})


def chat_request_to_anthropic(body: JSONObject) -> JSONObject:
    """An OpenAI chat request as an Anthropic Messages request (unknown fields are dropped)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ValueError("messages: must be a list")
    system: list[JSONObject] = []
    turns: list[JSONObject] = []
    function_id = ""
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{position}]: must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content")))
        elif role == "user":
            _append_turn(turns, "user", _user_blocks(message.get("content")))
        elif role == "assistant":
            if isinstance(message.get("function_call"), dict):
                function_id = f"call_fn_{position}"
            _append_turn(turns, "assistant", _assistant_blocks(message, function_id))
        elif role in ("tool", "function"):
            call_id = message.get("tool_call_id") if role == "tool" else function_id
            _append_turn(turns, "user", [_tool_result_block(message.get("content"), str(call_id or ""))])
        else:
            raise ValueError(f"messages[{position}].role: unsupported role {role!r}")
    out: JSONObject = {"model": body.get("model"), "messages": turns}
    if system:
        out["system"] = system[0]["text"] if len(system) == 1 else system
    _copy_sampling(body, out)
    tools = _anthropic_tools(body)
    if tools:
        out["tools"] = tools
        _set_tool_choice(body, out)
    _apply_reasoning(body, out)
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if isinstance(body.get("stream"), bool):
        out["stream"] = body["stream"]
    fmt = as_object(body.get("response_format"))
    schema = as_object(fmt.get("json_schema")).get("schema")
    if fmt.get("type") == "json_schema" and isinstance(schema, dict):
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    return out


def _append_turn(turns: list[JSONObject], role: str, blocks: list[JSONObject]) -> None:
    """Add blocks as a turn, merging into the previous turn of the same role (roles must alternate)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})
    if role == "user":  # tool results must lead a user turn
        turns[-1]["content"].sort(key=lambda block: block.get("type") != "tool_result")


def _text_of_part(part: Any) -> str | None:
    """The text of a chat content part (text or refusal), None for other parts."""
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and part.get("type") in ("text", "refusal", "input_text", None):
        text = part.get("text", part.get("refusal"))
        return text if isinstance(text, str) else None
    return None


def _text_blocks(content: Any) -> list[JSONObject]:
    """Non-empty Anthropic text blocks from chat content (a string or a list of parts)."""
    parts = content if isinstance(content, list) else [content]
    texts = [_text_of_part(part) for part in parts]
    return [{"type": "text", "text": text} for text in texts if text]


def _user_blocks(content: Any) -> list[JSONObject]:
    """Anthropic blocks for a chat user message's content."""
    if not isinstance(content, list):
        return _text_blocks(content)
    blocks: list[JSONObject] = []
    for part in content:
        kind = as_object(part).get("type")
        if kind in ("image_url", "file"):
            media = _image_block(part.get(kind)) if kind == "image_url" else _document_block(part.get(kind))
            blocks.extend([media] if media is not None else [])
        else:
            blocks.extend(_text_blocks([part]))
    return blocks


def _split_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a base64 data: URL, None otherwise."""
    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return None
    return header[5 : -len(";base64")] or "application/octet-stream", data


def _image_block(image: Any) -> JSONObject | None:
    """An Anthropic image block from a chat `image_url` value (a dict with `url`, or the URL)."""
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        return None
    if not url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    parsed = _split_data_url(url)
    if parsed is None:
        return None
    media_type = _MEDIA_ALIASES.get(parsed[0].lower(), parsed[0].lower())
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": parsed[1]}}


def _document_block(file: Any) -> JSONObject | None:
    """An Anthropic document block from a chat `file` part carrying a base64 PDF, None otherwise."""
    parsed = _split_data_url(str(as_object(file).get("file_data") or ""))
    if parsed is None or parsed[0] != "application/pdf":
        return None
    return {"type": "document", "source": {"type": "base64", "media_type": parsed[0], "data": parsed[1]}}


def _assistant_blocks(message: JSONObject, function_id: str) -> list[JSONObject]:
    """Anthropic blocks for a chat assistant message: text, then tool_use."""
    blocks = _text_blocks(message.get("content"))
    if not blocks:
        blocks = _text_blocks(message.get("refusal"))
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict) and call.get("type", "function") == "function":
            blocks.append(tool_use_block(str(call.get("id") or ""), call.get("function")))
    if isinstance(message.get("function_call"), dict):
        blocks.append(tool_use_block(function_id, message["function_call"]))
    return blocks


def _tool_result_block(content: Any, tool_use_id: str) -> JSONObject:
    """An Anthropic tool_result block from a chat tool message's content."""
    block: JSONObject = {"type": "tool_result", "tool_use_id": tool_use_id}
    converted = _text_blocks(content) if isinstance(content, list) else content
    if converted and isinstance(converted, str | list):
        block["content"] = converted
    return block


def _copy_sampling(body: JSONObject, out: JSONObject) -> None:
    """Copy max_tokens, temperature, top_p and stop sequences."""
    limit = body.get("max_completion_tokens")
    if not isinstance(limit, int):
        limit = body.get("max_tokens")
    out["max_tokens"] = limit if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_TOKENS
    for key in ("temperature", "top_p"):  # Anthropic allows 0..1 only
        if isinstance(body.get(key), int | float):
            out[key] = min(body[key], 1)
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    sequences = [s for s in stops if isinstance(s, str) and s.strip()]
    if sequences:
        out["stop_sequences"] = sequences


def _function_tool(function: Any) -> JSONObject | None:
    """An Anthropic tool from a chat function definition."""
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return None
    parameters = function.get("parameters")
    schema = dict(parameters) if isinstance(parameters, dict) and parameters else {"properties": {}}
    schema.setdefault("type", "object")
    tool: JSONObject = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        tool["description"] = function["description"]
    tool["input_schema"] = schema
    if isinstance(function.get("strict"), bool):
        tool["strict"] = function["strict"]
    return tool


def _anthropic_tools(body: JSONObject) -> list[JSONObject]:
    """Anthropic tools from chat `tools` (function tools only) and legacy `functions`."""
    functions = [tool.get("function") for tool in body.get("tools") or []
                 if isinstance(tool, dict) and tool.get("type", "function") == "function"]
    functions.extend(body.get("functions") or [])
    converted = [_function_tool(function) for function in functions]
    return [tool for tool in converted if tool is not None]


def _set_tool_choice(body: JSONObject, out: JSONObject) -> None:
    """Set Anthropic tool_choice from chat `tool_choice` / `function_call` and `parallel_tool_calls`."""
    choice = body.get("tool_choice", body.get("function_call"))
    result: JSONObject | None = None
    if choice in ("auto", "none"):
        result = {"type": choice}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, dict):
        function = choice.get("function") if "function" in choice else choice
        name = function.get("name") if isinstance(function, dict) else None
        result = {"type": "tool", "name": name} if isinstance(name, str) else {"type": "auto"}
    if body.get("parallel_tool_calls") is False:
        result = result or {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    if result is not None:
        out["tool_choice"] = result


def _apply_reasoning(body: JSONObject, out: JSONObject) -> None:
    """Map `reasoning_effort` to extended thinking and keep the request valid for thinking."""
    budget = EFFORT_BUDGETS.get(str(body.get("reasoning_effort")))
    choice = out.get("tool_choice")
    if budget is None or (isinstance(choice, dict) and choice.get("type") in ("any", "tool")):
        return
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if out["max_tokens"] <= budget:
        out["max_tokens"] += budget
    if out.get("temperature") not in (None, 1):
        del out["temperature"]
    if "top_p" in out and out["top_p"] < 0.95:
        del out["top_p"]


def anthropic_request_to_chat(body: JSONObject) -> JSONObject:
    """An Anthropic Messages request as an OpenAI chat request (thinking and server tools are dropped)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ValueError("messages: must be a list")
    out_messages: list[JSONObject] = []
    system = _joined_text(body.get("system"), skip_billing=True)
    if system:
        out_messages.append({"role": "system", "content": system})
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{position}]: must be an object")
        role, content = message.get("role"), message.get("content")
        if role == "system":
            text = _joined_text(content)
            if text:
                out_messages.append({"role": "system", "content": text})
        elif role == "user":
            out_messages.extend(_chat_user_messages(content))
        elif role == "assistant":
            out_messages.append(_chat_assistant_message(content))
        else:
            raise ValueError(f"messages[{position}].role: unsupported role {role!r}")
    out: JSONObject = {"model": body.get("model"), "messages": out_messages}
    for key in ("max_tokens", "temperature", "top_p"):
        if isinstance(body.get(key), int | float):
            out[key] = body[key]
    if isinstance(body.get("stop_sequences"), list) and body["stop_sequences"]:
        out["stop"] = list(body["stop_sequences"])
    tools = [tool for tool in map(_chat_tool, body.get("tools") or []) if tool is not None]
    if tools:
        out["tools"] = tools
        _chat_tool_choice(body.get("tool_choice"), out)
    user = as_object(body.get("metadata")).get("user_id")
    if isinstance(user, str):
        out["user"] = user
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    fmt = as_object(as_object(body.get("output_config")).get("format"))
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        spec = {"name": "output", "schema": fmt["schema"]}
        out["response_format"] = {"type": "json_schema", "json_schema": spec}
    return out


def _joined_text(content: Any, skip_billing: bool = False, sep: str = "\n\n") -> str:
    """The text of Anthropic content (a string or text blocks), blocks joined by `sep`."""
    if isinstance(content, str):
        return content
    texts = []
    for block in content if isinstance(content, list) else []:
        text = block.get("text") if isinstance(block, dict) and block.get("type") == "text" else None
        if isinstance(text, str) and text and not (skip_billing and text.startswith(_BILLING_PREFIX)):
            texts.append(text)
    return sep.join(texts)


def _data_url(source: Any) -> str | None:
    """A URL for an Anthropic base64 or url source."""
    source = as_object(source)
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        return f"data:{source.get('media_type') or 'application/octet-stream'};base64,{source['data']}"
    return None


def _chat_part(block: Any) -> JSONObject | None:
    """A chat content part for an Anthropic text, image or document block; None for anything else."""
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str) and block["text"]:
        return {"type": "text", "text": block["text"]}
    source = block.get("source")
    if kind == "image":
        url = _data_url(source)
        return {"type": "image_url", "image_url": {"url": url}} if url else None
    if kind == "document" and isinstance(source, dict):
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return {"type": "text", "text": source["data"]}
        url = _data_url(source)
        if url and url.startswith("data:"):
            name = str(block.get("title") or "document.pdf")
            return {"type": "file", "file": {"filename": name, "file_data": url}}
    return None


def _tool_message(block: JSONObject, images: list[JSONObject]) -> JSONObject:
    """A chat tool message for an Anthropic tool_result block; its images are added to `images`."""
    content = block.get("content")
    if isinstance(content, list):
        parts = [part for part in map(_chat_part, content) if part is not None]
        images.extend(part for part in parts if part["type"] != "text")
        text = "\n".join(part["text"] for part in parts if part["type"] == "text")
    else:
        text = content if isinstance(content, str) else ""
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id") or ""), "content": text}


def _chat_user_messages(content: Any) -> list[JSONObject]:
    """Chat messages for an Anthropic user turn: tool results first, then the user's own content."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[JSONObject] = []
    images: list[JSONObject] = []
    parts: list[JSONObject] = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            tool_messages.append(_tool_message(block, images))
        else:
            part = _chat_part(block)
            if part is not None:
                parts.append(part)
    parts = images + parts
    if not parts:
        return tool_messages
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*tool_messages, {"role": "user", "content": parts[0]["text"]}]
    return [*tool_messages, {"role": "user", "content": parts}]


def _chat_assistant_message(content: Any) -> JSONObject:
    """A chat assistant message for an Anthropic assistant turn (thinking blocks are dropped)."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    blocks = [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []
    text = _joined_text(blocks, sep="")
    calls = chat_tool_calls(blocks)
    message: JSONObject = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


def _chat_tool(tool: Any) -> JSONObject | None:
    """A chat function tool for an Anthropic custom tool; None for server tools."""
    tool = as_object(tool)
    if tool.get("type") not in (None, "custom") or not isinstance(tool.get("name"), str):
        return None
    schema = tool.get("input_schema")
    parameters = {k: v for k, v in schema.items() if k != "$schema"} if isinstance(schema, dict) else {}
    function: JSONObject = {"name": tool["name"]}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    function["parameters"] = parameters or {"type": "object", "properties": {}}
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: Any, out: JSONObject) -> None:
    """Set chat `tool_choice` and `parallel_tool_calls` from an Anthropic tool_choice."""
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind in ("auto", "none", "any"):
        out["tool_choice"] = "required" if kind == "any" else kind
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
