"""Where settings come from: a YAML file with ${VAR} interpolation, and CASCADEFLOW_* environment variables."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

import yaml

from router.errors import ConfigError

ENV_PREFIX = "CASCADEFLOW_"
ENV_NESTED_DELIMITER = "__"

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_PLACEHOLDER = re.compile(r"__cfenv(\d+)__")


def interpolate(value: Any, environ: Mapping[str, str], path: str = "",
                references: list[re.Match[str]] | None = None) -> Any:
    """Replace ${VAR} and ${VAR:-default} (or their placeholders) in every string of a decoded YAML tree."""
    if isinstance(value, dict):
        return {
            key: interpolate(item, environ, f"{path}.{key}" if path else str(key), references)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [interpolate(item, environ, f"{path}.{index}", references) for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set (use ${{{name}:-}} for optional)")

    if references is not None:
        return _PLACEHOLDER.sub(lambda m: resolve(references[int(m.group(1))]), value)
    return _INTERPOLATION.sub(resolve, value)


def parse_yaml(text: str, environ: Mapping[str, str], source: str) -> dict[str, Any]:
    """Parse YAML whose ${VAR} references may stand anywhere, even unquoted inside flow mappings."""
    references: list[re.Match[str]] = []

    def hide(match: re.Match[str]) -> str:
        references.append(match)
        return f"__cfenv{len(references) - 1}__"

    try:
        raw = yaml.safe_load(_INTERPOLATION.sub(hide, text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    result: dict[str, Any] = interpolate(raw, environ, "", references)
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
