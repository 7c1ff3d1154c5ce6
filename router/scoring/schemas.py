"""Offline JSON Schema validation: the dialect named by ``$schema`` (2020-12 by default), formats, no remote refs."""

from __future__ import annotations

from typing import Any

from jsonschema import (
    Draft4Validator,
    Draft6Validator,
    Draft7Validator,
    Draft201909Validator,
    Draft202012Validator,
)
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable

MAX_ERRORS = 3
"""How many validation errors a detail message names."""

_DIALECTS: tuple[tuple[str, type[Validator]], ...] = (
    ("json-schema.org/draft-04/schema", Draft4Validator),
    ("json-schema.org/draft-06/schema", Draft6Validator),
    ("json-schema.org/draft-07/schema", Draft7Validator),
    ("json-schema.org/draft/2019-09/schema", Draft201909Validator),
    ("json-schema.org/draft/2020-12/schema", Draft202012Validator),
)


def _no_retrieve(uri: str) -> Resource[Any]:
    """Refuse every remote ``$ref``: scoring never touches the network."""
    raise NoSuchResource(uri)


_OFFLINE: Registry[Any] = Registry(retrieve=_no_retrieve)  # type: ignore[call-arg]  # attrs init, untyped


def validator_class(schema: Any) -> type[Validator]:
    """The validator for the dialect a schema names in ``$schema``; 2020-12 when absent or unknown."""
    uri = schema.get("$schema") if isinstance(schema, dict) else None
    if isinstance(uri, str):
        key = uri.strip().split("://", 1)[-1].rstrip("#")
        for known, cls in _DIALECTS:
            if key == known:
                return cls
    return Draft202012Validator


def _where(path: str) -> str:
    """A readable location for an error path."""
    return "" if path == "$" else f" at {path}"


def compile_schema(schema: Any) -> Validator | None:
    """An offline validator for a schema; None when it is not a valid schema of its dialect."""
    if not isinstance(schema, dict | bool):
        return None
    cls = validator_class(schema)
    try:
        if isinstance(schema, dict):
            cls.check_schema(schema)
        return cls(schema, registry=_OFFLINE, format_checker=cls.FORMAT_CHECKER)
    except SchemaError:
        return None


def validation_errors(validator: Validator, instance: Any) -> list[str] | None:
    """Why an instance does not match ([] when it does); None when a ``$ref`` cannot be resolved offline."""
    try:
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    except Unresolvable:
        return None
    messages = [f"{e.message}{_where(e.json_path)}" for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        messages.append(f"... {len(errors) - MAX_ERRORS} more")
    return messages


def schema_errors(instance: Any, schema: Any) -> list[str] | None:
    """Why an instance does not match a schema ([] when it does); None when the schema itself is unusable."""
    validator = compile_schema(schema)
    return None if validator is None else validation_errors(validator, instance)
