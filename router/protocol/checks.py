"""Composable type checks for request bodies: each raises InvalidRequestError naming the field's dotted path.

A check is a function `(value, path) -> None`. Object checks treat a missing field and a JSON null alike (absent),
check every known field that is present, require the fields they are told to, and allow unknown fields.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import Any, NoReturn

from router.errors import InvalidRequestError

Check = Callable[[Any, str], None]


def join(path: str, key: str | int) -> str:
    """The dotted path of a field or an item under `path` (`messages.0.role`)."""
    return f"{path}.{key}" if path else str(key)


def fail(path: str, expected: str) -> NoReturn:
    """Refuse the field at `path`: it must be `expected`."""
    raise InvalidRequestError(f"{path}: must be {expected}", param=path)


def require(path: str, detail: str = "") -> NoReturn:
    """Refuse a missing field."""
    raise InvalidRequestError(f"{path}: Field required{detail}", param=path)


def is_int(value: Any) -> bool:
    """An integer that is not a boolean."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An integer or a float that is not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def string(value: Any, path: str) -> None:
    """A string."""
    if not isinstance(value, str):
        fail(path, "a string")


def boolean(value: Any, path: str) -> None:
    """true or false."""
    if not isinstance(value, bool):
        fail(path, "a boolean")


def number(value: Any, path: str) -> None:
    """A number."""
    if not is_number(value):
        fail(path, "a number")


def integer(value: Any, path: str) -> None:
    """An integer."""
    if not is_int(value):
        fail(path, "an integer")


def positive_integer(value: Any, path: str) -> None:
    """An integer of at least 1."""
    if not is_int(value) or value < 1:
        fail(path, "a positive integer")


def any_object(value: Any, path: str) -> None:
    """A JSON object of any content."""
    if not isinstance(value, dict):
        fail(path, "an object")


def any_list(value: Any, path: str) -> None:
    """A list of any items."""
    if not isinstance(value, list):
        fail(path, "a list")


def one_of(values: Collection[str]) -> Check:
    """One of a closed set of strings."""
    allowed = frozenset(values)
    expected = f"one of {', '.join(sorted(allowed))}"

    def check(value: Any, path: str) -> None:
        if not isinstance(value, str) or value not in allowed:
            fail(path, expected)

    return check


def list_of(item: Check) -> Check:
    """A list whose every item passes `item`."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, list):
            fail(path, "a list")
        for index, element in enumerate(value):
            item(element, join(path, index))

    return check


def string_or_list(items: Check, expected: str) -> Check:
    """A string, or a list checked by `items` (`expected` names both in the message)."""

    def check(value: Any, path: str) -> None:
        if isinstance(value, str):
            return
        if not isinstance(value, list):
            fail(path, expected)
        items(value, path)

    return check


def string_or_object(fields: Check, expected: str, text: Check = string) -> Check:
    """A string checked by `text`, or an object checked by `fields`."""

    def check(value: Any, path: str) -> None:
        if isinstance(value, str):
            text(value, path)
        elif isinstance(value, dict):
            fields(value, path)
        else:
            fail(path, expected)

    return check


def object_of(item: Check) -> Check:
    """An object whose every value passes `item` (a map such as `metadata`)."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            fail(path, "an object")
        for key, element in value.items():
            item(element, join(path, key))

    return check


def check_fields(value: Any, path: str, spec: Mapping[str, Check], required: Collection[str] = ()) -> None:
    """An object: the `required` fields present and not null, every field of `spec` present passes its check."""
    if not isinstance(value, dict):
        fail(path, "an object")
    for key in required:
        if value.get(key) is None:
            require(join(path, key))
    for key, check in spec.items():
        field = value.get(key)
        if field is not None:
            check(field, join(path, key))


def fields(spec: Mapping[str, Check], required: Collection[str] = ()) -> Check:
    """An object check from its field checks (see check_fields)."""
    frozen, needed = MappingProxyType(dict(spec)), tuple(required)

    def check(value: Any, path: str) -> None:
        check_fields(value, path, frozen, needed)

    return check


def tagged(kinds: Mapping[str, Check], *, default: str | None = None, key: str = "type") -> Check:
    """An object with a string `key` (`type`, or `default` when absent or null); known kinds pass their own check."""
    frozen = MappingProxyType(dict(kinds))

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            fail(path, f"an object with a {key}")
        kind = value.get(key)
        kind = default if kind is None else kind
        if kind is None:
            require(join(path, key))
        if not isinstance(kind, str):
            fail(join(path, key), "a string")
        specific = frozen.get(kind)
        if specific is not None:
            specific(value, path)

    return check


def both(*checks: Check) -> Check:
    """Every check in turn."""

    def check(value: Any, path: str) -> None:
        for each in checks:
            each(value, path)

    return check
