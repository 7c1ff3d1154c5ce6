"""Write chosen thresholds into a proxy config file, keeping everything else in it as it was.

The config may hold `${VAR}` references and comments that a YAML round trip would lose or break, so the file is
edited as text: the `skip_threshold:` line of the top-level `learned_router:` block is replaced or added (the
block itself is appended when missing), and likewise `quality_threshold:` in the cascade rule that is named.
The result is validated with the proxy's own settings loader before it replaces the file.
"""

from __future__ import annotations

import re
from pathlib import Path

from router.settings import load_settings

_TOP_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)\s*:", re.MULTILINE)


def _block(text: str, key: str) -> tuple[int, int] | None:
    """The span of a top-level block `key:` (from its line to the next top-level key)."""
    keys = list(_TOP_KEY.finditer(text))
    for index, match in enumerate(keys):
        if match.group("key") == key:
            end = keys[index + 1].start() if index + 1 < len(keys) else len(text)
            return match.start(), end
    return None


def _set_in_block(block: str, field: str, value: str) -> str:
    line = re.compile(rf"^(?P<indent>[ \t]+){field}\s*:.*$", re.MULTILINE)
    if line.search(block):
        return line.sub(lambda m: f"{m.group('indent')}{field}: {value}", block, count=1)
    head, newline, rest = block.partition("\n")
    if head.rstrip().endswith("{}"):
        head = head.rstrip()[:-2].rstrip()
    return f"{head}\n  {field}: {value}\n{rest}" if newline else f"{head}\n  {field}: {value}\n"


def set_skip_threshold(text: str, threshold: float) -> str:
    """The config text with `learned_router.skip_threshold` set."""
    value = f"{threshold:.4f}"
    span = _block(text, "learned_router")
    if span is None:
        separator = "" if not text or text.endswith("\n") else "\n"
        return f"{text}{separator}learned_router:\n  skip_threshold: {value}\n"
    start, end = span
    return text[:start] + _set_in_block(text[start:end], "skip_threshold", value) + text[end:]


def set_quality_threshold(text: str, rule: str, threshold: float) -> str:
    """The config text with `quality_threshold` set in the cascade rule whose request_model or name is `rule`."""
    span = _block(text, "cascade_rules")
    if span is None:
        raise ValueError("the config has no cascade_rules")
    start, end = span
    block = text[start:end]
    items = list(re.finditer(r"^[ \t]*- ", block, re.MULTILINE))
    for index, item in enumerate(items):
        item_end = items[index + 1].start() if index + 1 < len(items) else len(block)
        entry = block[item.start():item_end]
        if re.search(rf"\b(request_model|name)\s*:\s*['\"]?{re.escape(rule)}['\"]?\s*$", entry, re.MULTILINE):
            indent = " " * (item.end() - item.start())
            line = re.compile(r"^(?P<lead>[ \t]*-?[ \t]*)quality_threshold\s*:.*$", re.MULTILINE)
            if line.search(entry):
                entry = line.sub(lambda m: f"{m.group('lead')}quality_threshold: {threshold:.4f}", entry, count=1)
            else:
                entry = entry.rstrip("\n") + f"\n{indent}quality_threshold: {threshold:.4f}\n"
            block = block[:item.start()] + entry + block[item_end:]
            return text[:start] + block + text[end:]
    raise ValueError(f"no cascade rule {rule!r} in the config")


def write_thresholds(path: Path, *, skip_threshold: float, rule: str | None = None,
                     quality_threshold: float | None = None) -> str:
    """Update the config file in place (validated first); returns the new text."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    text = set_skip_threshold(text, skip_threshold)
    if rule is not None and quality_threshold is not None:
        text = set_quality_threshold(text, rule, quality_threshold)
    candidate = path.with_name(path.name + ".new")
    candidate.write_text(text, encoding="utf-8")
    try:
        load_settings(candidate)
    except Exception:
        candidate.unlink()
        raise
    candidate.replace(path)
    return text
