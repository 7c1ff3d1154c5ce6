"""Every option of every `cascadeflow` sub-command has a help text, and the help states its default."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from router.cli import build_parser


def walk(parser: argparse.ArgumentParser, name: str = "cascadeflow") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Each (command line, parser) of the tree, found through the sub-parser actions."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, child in action.choices.items():
                yield from walk(child, f"{name} {command}")


def options() -> list[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    return [(f"{name} {'/'.join(action.option_strings) or action.dest}", parser, action)
            for name, parser in walk(build_parser()) for action in parser._actions
            if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)]


def test_the_walk_reaches_every_command() -> None:
    names = {name for name, _ in walk(build_parser())}
    assert {"cascadeflow proxy start", "cascadeflow config check", "cascadeflow demo", "cascadeflow replay-upstream",
            "cascadeflow keys hash", "cascadeflow local-models serve"} <= names
    assert len(options()) > 20


@pytest.mark.parametrize(("where", "parser", "action"), options(), ids=[where for where, _, _ in options()])
def test_every_option_has_help_stating_its_default(where: str, parser: argparse.ArgumentParser,
                                                   action: argparse.Action) -> None:
    assert action.help and action.help.strip(), f"{where}: no help text"
    if action.option_strings:
        shown = parser._get_formatter()._get_help_string(action) or ""
        assert "default" in shown.lower(), f"{where}: the help does not state the default: {shown!r}"
        assert "(default: None)" not in shown, f"{where}: say what an unset value means"


def test_help_renders_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replay-upstream", "--help"])
    out = capsys.readouterr().out
    assert "(default: 8100)" in out and "(default: 127.0.0.1)" in out
