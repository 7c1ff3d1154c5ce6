"""Config errors that help: the file, the line, the key path and, for an unknown key, the closest valid key."""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from router.errors import ConfigError

KeyPath = tuple[str | int, ...]
"""A key path into the config tree: mapping keys and list indexes (`("cascade_rules", 0, "verify")`)."""

Locate = Callable[[KeyPath], tuple[int, int] | None]
"""The (line, column) of a key path in the config file, None when the file does not hold it."""

UNKNOWN_KEY = "Extra inputs are not permitted"
"""Pydantic's message for an unknown key, kept at the head of ours (callers match on it)."""


def dotted(path: KeyPath) -> str:
    """A key path as written in messages: `cascade_rules.0.verify`."""
    return ".".join(str(part) for part in path)


@dataclass(frozen=True)
class ConfigIssue:
    """One problem of a config: what is wrong, at which key path, and where in the file (1-based)."""

    message: str
    path: KeyPath = ()
    line: int | None = None
    column: int | None = None

    def render(self, file: str | None, *, name_file: bool) -> str:
        """`FILE:LINE:COLUMN: key.path: message`; without a line, `FILE: ` only when `name_file`."""
        body = f"{dotted(self.path)}: {self.message}" if self.path else self.message
        if file is not None and self.line is not None:
            column = f":{self.column}" if self.column is not None else ""
            return f"{file}:{self.line}{column}: {body}"
        return f"{file}: {body}" if file is not None and name_file else body

    def at(self, position: tuple[int, int] | None) -> ConfigIssue:
        """This issue at a (line, column) of the file (unchanged for None)."""
        if position is None:
            return self
        return ConfigIssue(self.message, self.path, position[0], position[1])


class ConfigFileError(ConfigError):
    """An invalid config: every issue names its key path, and the file, line and column where the file holds it.

    `str()` is one line: each issue as `key.path: message`, prefixed `FILE:LINE:COLUMN: ` when the file holds
    the key (a value set by a CASCADEFLOW_* variable or a command-line flag has no line), then `note`.
    `describe()` names the file for every issue, for the command line.
    """

    def __init__(self, issues: Sequence[ConfigIssue], *, file: str | None = None, note: str = "") -> None:
        self.issues = tuple(issues)
        self.file = file
        self.note = note
        super().__init__(self.describe(name_file=False))

    def describe(self, *, name_file: bool = True, separator: str = "; ") -> str:
        """Every issue, joined by `separator`, then the note; `name_file` names the file even without a line."""
        return separator.join(issue.render(self.file, name_file=name_file) for issue in self.issues) + self.note

    def located(self, file: str, locate: Locate) -> ConfigFileError:
        """The same issues in `file`, each at the position `locate` finds for its key path (kept when it has one)."""
        issues = [issue if issue.line is not None else issue.at(locate(issue.path)) for issue in self.issues]
        issues.sort(key=lambda issue: (issue.line is None, issue.line or 0, issue.column or 0))
        return ConfigFileError(issues, file=file, note=self.note)


def _alternatives(annotation: Any) -> list[Any]:
    """The members of a union (None left out), else the annotation itself."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [arg for arg in get_args(annotation) if arg is not type(None)]
    return [annotation]


def _model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _step(annotation: Any, part: str | int) -> Any:
    """The type one step below `annotation` at `part` (a field, a list index or a mapping key), None if unknown."""
    for candidate in _alternatives(annotation):
        model = _model(candidate)
        if model is not None:
            field = model.model_fields.get(str(part))
            if field is not None:
                return field.annotation
            continue
        origin, args = get_origin(candidate), get_args(candidate)
        if origin in (list, tuple, Sequence) and args and isinstance(part, int):
            return args[0]
        if origin in (dict, Mapping) and len(args) == 2:
            return args[1]
    return None


def valid_keys(root: type[BaseModel], parent: KeyPath) -> list[str]:
    """The keys a config section accepts: the fields of the model at `parent` (none when it is not a model)."""
    annotation: Any = root
    for part in parent:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    models = [model for model in map(_model, _alternatives(annotation)) if model is not None]
    return sorted({name for model in models for name in model.model_fields})


def unknown_key_message(key: str, keys: Sequence[str]) -> str:
    """Pydantic's message with the closest valid key (`difflib`), else the list of the valid ones."""
    close = difflib.get_close_matches(key.lower(), keys, n=1)
    if close:
        return f"{UNKNOWN_KEY}: unknown key; did you mean `{close[0]}`?"
    return f"{UNKNOWN_KEY}: unknown key (valid keys: {', '.join(keys)})" if keys else f"{UNKNOWN_KEY}: unknown key"


def validation_issues(error: ValidationError, root: type[BaseModel]) -> list[ConfigIssue]:
    """The issues of a validation error, one per error, each with its key path (none for whole-config checks)."""
    issues = []
    for item in error.errors():
        path: KeyPath = tuple(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden" and path:
            message = unknown_key_message(str(path[-1]), valid_keys(root, path[:-1]))
        issues.append(ConfigIssue(message, path))
    return issues


def leaf_paths(tree: Mapping[str, Any], prefix: KeyPath = ()) -> list[KeyPath]:
    """The key paths of the values of a nested mapping (None values left out)."""
    paths: list[KeyPath] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            paths += leaf_paths(value, (*prefix, key))
        elif value is not None:
            paths.append((*prefix, key))
    return paths


def overlaps(path: KeyPath, others: Iterable[KeyPath]) -> bool:
    """Whether one of `others` is `path`, above it or below it (parts compared as lower-case text)."""
    mine = [str(part).lower() for part in path]
    for other in others:
        theirs = [str(part).lower() for part in other]
        common = min(len(mine), len(theirs))
        if mine[:common] == theirs[:common]:
            return True
    return False
