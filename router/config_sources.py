"""Where settings come from: a YAML file with ${VAR} interpolation, and CASCADEFLOW_* environment variables."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from router.config_errors import ConfigFileError, ConfigIssue, KeyPath, overlaps
from router.errors import ConfigError

ENV_PREFIX = "CASCADEFLOW_"
ENV_NESTED_DELIMITER = "__"

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_PLACEHOLDER = re.compile(r"__cfenv(\d+)__")


def interpolate(value: Any, environ: Mapping[str, str], path: str = "",
                references: list[re.Match[str]] | None = None) -> Any:
    """Replace ${VAR} and ${VAR:-default} (or their placeholders) in every string of a decoded YAML tree."""
    return _interpolate(value, environ, tuple(path.split(".")) if path else (), references)


def _interpolate(value: Any, environ: Mapping[str, str], path: KeyPath,
                 references: list[re.Match[str]] | None) -> Any:
    if isinstance(value, dict):
        return {key: _interpolate(item, environ, (*path, str(key)), references) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, environ, (*path, index), references) for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigFileError([ConfigIssue(f"environment variable {name} is not set (use ${{{name}:-}} for optional)",
                                           path)])

    if references is not None:
        return _PLACEHOLDER.sub(lambda m: resolve(references[int(m.group(1))]), value)
    return _INTERPOLATION.sub(resolve, value)


@dataclass(frozen=True)
class _Hidden:
    """A YAML text with each ${VAR} reference replaced by a placeholder (lines unchanged), and where each stood."""

    original: str
    text: str
    references: tuple[re.Match[str], ...]
    spans: tuple[tuple[int, int, int, int], ...]
    """Per placeholder: its start and end in `text`, the reference's start and end in `original`."""

    def position(self, index: int) -> tuple[int, int]:
        """The 1-based line and column in the original text of a character index of the hidden text."""
        original = index
        for start, end, original_start, original_end in self.spans:
            if index < start:
                break
            original = original_start if index < end else original_end + index - end
        line = self.original.count("\n", 0, original) + 1
        return line, original - self.original.rfind("\n", 0, original)


def _hide_references(text: str) -> _Hidden:
    """Placeholders for the ${VAR} references, which may stand anywhere, even unquoted inside flow mappings."""
    pieces: list[str] = []
    references: list[re.Match[str]] = []
    spans: list[tuple[int, int, int, int]] = []
    last = hidden = 0
    for match in _INTERPOLATION.finditer(text):
        placeholder = f"__cfenv{len(references)}__"
        hidden += match.start() - last
        pieces += [text[last:match.start()], placeholder]
        spans.append((hidden, hidden + len(placeholder), match.start(), match.end()))
        references.append(match)
        hidden += len(placeholder)
        last = match.end()
    pieces.append(text[last:])
    return _Hidden(text, "".join(pieces), tuple(references), tuple(spans))


def _node_position(hidden: _Hidden, path: KeyPath) -> tuple[int, int] | None:
    """Where the YAML holds a key path: the deepest key (or list item) of it found; None when not even the first."""
    try:
        node = yaml.compose(hidden.text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    found = node.start_mark if not path else None
    for part in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, item in node.value:  # the last of duplicate keys, as the loader keeps it
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    found, child = key.start_mark, item
        elif isinstance(node, yaml.SequenceNode) and str(part).isdigit() and int(part) < len(node.value):
            child = node.value[int(part)]
            found = child.start_mark
        if child is None:
            break
        node = child
    return None if found is None else hidden.position(found.index)


def in_file(error: ConfigFileError, file: str | None, text: str | None,
            elsewhere: Sequence[KeyPath] = ()) -> ConfigFileError:
    """The error with its issues located in the config file `text`, but for whole-config checks (no key path)
    and keys set `elsewhere` (by a variable or a flag: the file is not where their value comes from)."""
    if file is None or text is None:
        return error
    hidden = _hide_references(text)
    return error.located(file, lambda key: None if not key or overlaps(key, elsewhere) else _node_position(hidden, key))


def _yaml_issue(error: yaml.YAMLError, hidden: _Hidden) -> ConfigIssue:
    """A YAML syntax error at its line and column in the original text (not `<unicode string>`)."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        message = f"invalid YAML: {error.problem or error.context or 'malformed'}"
        if error.problem and error.context and error.context_mark is not None:
            line, column = hidden.position(error.context_mark.index)
            message += f" ({error.context} at line {line}, column {column})"
        return ConfigIssue(message).at(None if mark is None else hidden.position(mark.index))
    if isinstance(error, yaml.reader.ReaderError):
        return ConfigIssue(f"invalid YAML: unacceptable character #x{error.character:04x}: {error.reason}").at(
            hidden.position(error.position))
    return ConfigIssue(f"invalid YAML: {error}")


def read_config(path: str | Path, environ: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """A config file's text and its settings tree, interpolated (`parse_yaml`); ConfigError when it cannot be
    read, naming the line of a byte that is not UTF-8."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        column = exc.start - exc.object.rfind(b"\n", 0, exc.start)
        issue = ConfigIssue(f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x})", line=line, column=column)
        raise ConfigFileError([issue], file=str(path)) from exc
    return text, parse_yaml(text, environ, str(path))


def parse_yaml(text: str, environ: Mapping[str, str], source: str) -> dict[str, Any]:
    """Parse a YAML config with ${VAR} references; errors name `source` and the line (ConfigFileError)."""
    hidden = _hide_references(text)
    try:
        raw = yaml.safe_load(hidden.text)
    except yaml.YAMLError as exc:
        raise ConfigFileError([_yaml_issue(exc, hidden)], file=source) from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigFileError([ConfigIssue("the top level must be a mapping").at(_node_position(hidden, ()))],
                              file=source)
    try:
        result: dict[str, Any] = interpolate(raw, environ, "", list(hidden.references))
    except ConfigFileError as exc:
        raise exc.located(source, lambda path: _node_position(hidden, path)) from exc
    return result


def env_value(raw: str) -> Any:
    """A JSON object, array or `null` decoded; any other text as given (validation converts numbers, booleans)."""
    text = raw.strip()
    if text == "null" or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return raw
    return raw


def setting_variables(environ: Mapping[str, str], fields: Collection[str]) -> list[str]:
    """The names of the `CASCADEFLOW_*` variables that set a setting, sorted."""
    names = []
    for name in environ:
        parts = name[len(ENV_PREFIX):].lower().split(ENV_NESTED_DELIMITER)
        if name.upper().startswith(ENV_PREFIX) and parts[0] in fields and all(parts):
            names.append(name)
    return sorted(names, key=str.upper)


def env_overrides(environ: Mapping[str, str], fields: Collection[str]) -> dict[str, Any]:
    """The nested values of the `CASCADEFLOW_<FIELD>[__<KEY>...]` variables naming a top-level field."""
    # Case-insensitive; a digit part indexes a list (CASCADEFLOW_CASCADE_RULES__0__QUALITY_THRESHOLD). Others,
    # such as CASCADEFLOW_CONFIG (the config file's path, not a setting), are ignored.
    result: dict[str, Any] = {}
    for name in setting_variables(environ, fields):
        parts = name[len(ENV_PREFIX):].lower().split(ENV_NESTED_DELIMITER)
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = env_value(environ[name])
    return result


def deep_merge(base: Any, override: Any, path: str = "") -> Any:
    """`override` over `base`: mappings merge key by key (case-insensitively), `{"0": ...}` updates a list item."""
    if isinstance(override, dict) and isinstance(base, dict):
        merged = dict(base)
        for key, value in override.items():
            existing = key if key in base else next((k for k in base if str(k).lower() == str(key).lower()), None)
            where = f"{path}.{key}" if path else str(key)
            if existing is None:
                merged[key] = value
            else:
                merged[existing] = deep_merge(base[existing], value, where)
        return merged
    if isinstance(override, dict) and isinstance(base, list) and all(str(key).isdigit() for key in override):
        items = list(base)
        for key, value in override.items():
            if int(key) >= len(items):
                raise ConfigError(f"{path}.{key}: no such item (the list has {len(items)})")
            items[int(key)] = deep_merge(items[int(key)], value, f"{path}.{key}")
        return items
    return override
