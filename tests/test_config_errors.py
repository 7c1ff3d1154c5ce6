"""Config errors that help: the file, line and key path, the closest valid key for an unknown one, and YAML
syntax errors at their real place, printed by the command line without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.cli import main
from router.config_errors import ConfigFileError, ConfigIssue, valid_keys
from router.errors import ConfigError
from router.settings import CascadeRule, Settings, load_settings

RULE = """providers:
  openai: {base_url: 'https://api.openai.com/v1', api_key: ${OPENAI_API_KEY:-}}
cascade_rules:
  - request_model: gpt-4o
    draft_model: gpt-4o-mini
    verifier_model: gpt-4o
    verfy: {samples: 3}
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, environ: dict[str, str] | None = None) -> ConfigFileError:
    with pytest.raises(ConfigFileError) as raised:
        load_settings(path, environ=environ or {})
    return raised.value


def test_an_unknown_key_names_file_line_path_and_the_closest_key(tmp_path: Path) -> None:
    path = write(tmp_path, RULE)
    error = error_of(path)
    assert isinstance(error, ConfigError), "callers catching ConfigError still catch it"
    assert str(error) == (f"{path}:7:5: cascade_rules.0.verfy: Extra inputs are not permitted: unknown key; "
                          "did you mean `verify`?")
    (issue,) = error.issues
    assert (issue.path, issue.line, issue.column, error.file) == (("cascade_rules", 0, "verfy"), 7, 5, str(path))


@pytest.mark.parametrize(("text", "key", "line", "suggestion"), [
    ("serverr: {port: 8000}\n", "serverr", 1, "`server`"),
    ("server:\n  host: 127.0.0.1\n  prot: 8000\n", "server.prot", 3, "`port`"),
    ("model_info:\n  'qwen*': {context_windw: 4096}\n", "model_info.qwen*.context_windw", 2, "`context_window`"),
    ("model_info:\n  m:\n    prices: {input: 1, output: 1, cache_reed: 1}\n", "model_info.m.prices.cache_reed", 3,
     "`cache_read`"),
    ("auth:\n  keys:\n    - {key_sha256: '" + "a" * 64 + "', user: u, usr: v}\n", "auth.keys.0.usr", 3, "`user`"),
])
def test_suggestions_follow_lists_mappings_and_optional_sections(tmp_path: Path, text: str, key: str, line: int,
                                                                 suggestion: str) -> None:
    path = write(tmp_path, text)
    message = str(error_of(path))
    assert message.startswith(f"{path}:{line}:") and f": {key}: " in message
    assert message.endswith(f"did you mean {suggestion}?")


def test_without_a_close_key_the_valid_keys_are_listed(tmp_path: Path) -> None:
    message = str(error_of(write(tmp_path, "embedding: {zzz: 1}\n")))
    assert message.endswith("unknown key (valid keys: enabled, max_batch, max_chars, threads, window_ms)")


def test_valid_keys_walk_the_settings_types() -> None:
    assert "verify" in valid_keys(Settings, ("cascade_rules", 0))
    assert valid_keys(Settings, ("cascade_rules", 0)) == sorted(CascadeRule.model_fields)
    assert "samples" in valid_keys(Settings, ("cascade_rules", 3, "verify"))
    assert valid_keys(Settings, ("providers",)) == [], "a mapping of names has no fixed keys"
    assert valid_keys(Settings, ("nowhere", "at all")) == []


@pytest.mark.parametrize(("text", "line", "column", "problem"), [
    ("server:\n  port: 8000\n host: x\n", 3, 2, "expected <block end>"),
    ("cascade_rules:\n  - {request_model: a, draft_model: b\n", 3, 1, "expected ',' or '}'"),
    ("providers:\n  openai: {api_key: ${OPENAI_API_KEY:-}, base_url: x: y}\n", 2, 53, "but got ':'"),
    ("server: {port: 8000}\n\tcache: {}\n", 2, 1, "found character '\\t'"),
])
def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path: Path, text: str, line: int, column: int,
                                                            problem: str) -> None:
    path = write(tmp_path, text)
    message = str(error_of(path))
    assert message.startswith(f"{path}:{line}:{column}: invalid YAML: "), message
    assert problem in message and "<unicode string>" not in message and "\n" not in message


def test_an_unset_variable_is_located_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  openai: {base_url: 'https://x/v1', api_key: ${SOME_KEY}}\n")
    assert str(error_of(path)) == (f"{path}:2:38: providers.openai.api_key: environment variable SOME_KEY is not "
                                   "set (use ${SOME_KEY:-} for optional)")


def test_a_value_from_a_variable_or_a_flag_is_not_blamed_on_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 8000}\n")
    error = error_of(path, {"CASCADEFLOW_SERVER__PROT": "9000"})
    assert str(error) == ("server.prot: Extra inputs are not permitted: unknown key; did you mean `port`? "
                          "(CASCADEFLOW_* variables set: CASCADEFLOW_SERVER__PROT)")
    assert error.describe() == f"{path}: {error}", "the command line still names the file"
    with pytest.raises(ConfigFileError) as raised:
        load_settings(path, environ={}, server={"port": -1})
    assert str(raised.value).startswith("server.port: Input should be greater than or equal to 0")


def test_several_issues_come_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 8000}\nembedding: {max_btach: 3}\nserver_: 1\ncache: {ttl_s: -1}\n")
    error = error_of(path)
    assert [issue.line for issue in error.issues] == [2, 3, 4]
    assert error.describe(separator="\n").count(f"{path}:") == 3


def test_other_file_problems_name_the_file(tmp_path: Path) -> None:
    listing = write(tmp_path, "# a comment\n\n- a\n- b\n")
    assert str(error_of(listing)) == f"{listing}:3:1: the top level must be a mapping"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"server: {port: 80\xff}\n")
    assert str(error_of(binary)) == f"{binary}:1:18: not UTF-8 text (byte 0xff)"
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing\.yaml"):
        load_settings(tmp_path / "missing.yaml", environ={})


def test_an_issue_renders_with_or_without_a_place() -> None:
    issue = ConfigIssue("bad", ("a", 0, "b"))
    assert issue.render(None, name_file=True) == "a.0.b: bad"
    assert issue.render("c.yaml", name_file=False) == "a.0.b: bad"
    assert issue.render("c.yaml", name_file=True) == "c.yaml: a.0.b: bad"
    assert issue.at((3, 9)).render("c.yaml", name_file=False) == "c.yaml:3:9: a.0.b: bad"


def test_config_check_prints_every_issue_without_a_traceback(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, RULE + "server: {prot: 1}\n")
    assert main(["config", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0] == (f"cascadeflow: invalid configuration: {path}:7:5: cascade_rules.0.verfy: Extra inputs are "
                        "not permitted: unknown key; did you mean `verify`?")
    assert lines[1] == (f"  {path}:8:10: server.prot: Extra inputs are not permitted: unknown key; "
                        "did you mean `port`?")
    assert "Traceback" not in captured.err


def test_config_check_names_the_file_of_a_whole_config_problem(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "providers: {openai: {base_url: 'https://x/v1'}}\n"
                           "cascade_rules: [{name: r, draft_model: groq/llama, verifier_model: gpt-4o}]\n")
    assert main(["config", "check", str(path)]) == 2
    assert f"{path}: cascade_rules.0.draft_model: unknown provider 'groq'" in capsys.readouterr().err
    bad_yaml = write(tmp_path, "a: [1\n", "broken.yaml")
    assert main(["config", "check", str(bad_yaml)]) == 2
    assert f"{bad_yaml}:2:1: invalid YAML: " in capsys.readouterr().err
