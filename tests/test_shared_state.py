"""The configuration names of the issue (`tiers`, `users`, `state`, `database`): where each one lands, that an
explicit nested value wins, that both spellings at once is an error naming both, typos, and masked secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.auth import Authenticator
from router.auth_keys.admission import KeyPrincipal
from router.auth_keys.records import hash_key
from router.budgets.core import BudgetLimits, BudgetScope
from router.config_view import MASK, masked_config
from router.errors import ConfigError
from router.reload import changed_paths, effective_settings
from router.settings import Settings, load_settings

ALICE = hash_key("alice-key")
REDIS = "redis://:redis-secret@127.0.0.1:6379/0"
DATABASE = "postgresql://cascadeflow:db-secret@127.0.0.1:5432/cascadeflow"
ISSUE = f"""
auth:
  keys:
    - {{key_sha256: {ALICE}, user: alice, tier: pro}}
  admin_keys: [{ALICE}]
tiers:
  pro: {{rpm: 60, tpm: 200000, max_concurrent: 8, daily_budget_usd: 20, monthly_budget_usd: 300}}
users:
  alice: {{daily_budget_usd: 5}}
state:
  redis_url: {REDIS}
database:
  url: {DATABASE}
"""


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_settings(path, environ={})


def test_each_name_of_the_issue_lands_where_it_is_used(tmp_path: Path) -> None:
    settings = load(tmp_path, ISSUE)
    assert settings.auth.tiers == settings.tiers and settings.tiers["pro"].rpm == 60
    assert settings.auth.users == settings.users and settings.users["alice"].daily_budget_usd == 5.0
    assert settings.auth.store == settings.spend.url == settings.outcome_log.url == DATABASE
    assert settings.auth.redis_url == settings.auth.limiter_redis_url == settings.cache.redis_url == REDIS
    assert settings.cache.mode == "redis", "a cache turned on is shared through the state's Redis"
    assert not settings.cache.enabled and not settings.semantic_cache_wanted, "state turns no cache on"
    alice = Authenticator(settings.auth).authenticate({"x-api-key": "alice-key"})
    assert isinstance(alice, KeyPrincipal) and alice.admin and alice.tier == "pro"
    assert alice.budgets == (BudgetScope("user:alice", BudgetLimits(daily_usd=5.0, monthly_usd=300.0)),)
    assert [(scope.name, scope.limits.rpm) for scope in alice.scopes] == [("user:alice", 60)]


def test_the_older_nested_spellings_keep_working(tmp_path: Path) -> None:
    settings = load(tmp_path, "auth:\n  tiers: {free: {rpm: 5}}\n  users: {bob: {rpm: 1}}\n")
    assert settings.tiers == settings.auth.tiers and settings.tiers["free"].rpm == 5
    assert settings.users["bob"].rpm == 1 and settings.auth.users["bob"].rpm == 1


def test_an_explicit_nested_value_wins(tmp_path: Path) -> None:
    settings = load(tmp_path, f"""
state: {{redis_url: '{REDIS}'}}
database: {{url: '{DATABASE}'}}
auth: {{store: 'sqlite:///keys.sqlite', redis_url: 'redis://limits:6379/1'}}
spend: {{url: 'postgresql://db/spend'}}
outcome_log: {{url: 'sqlite:///outcomes.sqlite'}}
cache: {{mode: embedded, redis_url: 'redis://cache:6379/2'}}
""")
    assert settings.auth.store == f"sqlite:///{tmp_path}/keys.sqlite"
    assert settings.auth.limiter_redis_url == "redis://limits:6379/1"
    assert settings.spend.url == "postgresql://db/spend"
    assert settings.outcome_log.url == f"sqlite:///{tmp_path}/outcomes.sqlite"
    assert (settings.cache.mode, settings.cache.redis_url) == ("embedded", "redis://cache:6379/2")
    assert settings.database.url == DATABASE and settings.state.redis_url == REDIS


def test_without_a_database_the_keys_live_in_the_states_redis(tmp_path: Path) -> None:
    settings = load(tmp_path, f"state: {{redis_url: '{REDIS}'}}\n")
    assert settings.auth.store == REDIS and settings.auth.limiter_redis_url == REDIS
    assert settings.spend.url == f"sqlite:///{tmp_path}/var/spend.sqlite"
    assert settings.outcome_log.url == f"sqlite:///{tmp_path}/var/outcomes.sqlite"
    plain = load(tmp_path, "{}\n")
    assert plain.auth.store == f"sqlite:///{tmp_path}/var/keys.sqlite" and plain.auth.limiter_redis_url is None
    assert plain.cache.mode == "embedded" and plain.state.on_failure == "open"


def test_the_names_come_from_the_environment_too(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("{}\n")
    settings = load_settings(path, environ={"CASCADEFLOW_STATE__REDIS_URL": REDIS,
                                            "CASCADEFLOW_DATABASE__URL": DATABASE,
                                            "CASCADEFLOW_STATE__ON_FAILURE": "closed"})
    assert settings.auth.limiter_redis_url == REDIS and settings.auth.store == settings.spend.url == DATABASE
    assert settings.state.on_failure == "closed"


@pytest.mark.parametrize("name", ["tiers", "users"])
def test_both_spellings_at_once_is_an_error_naming_both(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=rf"{name} and auth\.{name}: the same setting given twice"):
        load(tmp_path, f"{name}: {{x: {{rpm: 1}}}}\nauth: {{{name}: {{x: {{rpm: 2}}}}}}\n")


@pytest.mark.parametrize(("text", "message"), [
    ("databse: {url: 'postgresql://db/x'}", "config.yaml:1:1: databse: Extra inputs are not permitted: unknown key; "
                                             "did you mean `database`?"),
    ("state: {redis_ur: 'redis://r'}", "config.yaml:1:9: state.redis_ur: Extra inputs are not permitted: unknown "
                                       "key; did you mean `redis_url`?"),
    ("state: {on_failure: shut}", "config.yaml:1:9: state.on_failure: Input should be 'open' or 'closed'"),
    ("database: {url: 'mysql://db/x'}", "config.yaml:1:12: database.url: must start with postgresql://"),
    ("state: {redis_url: 'http://r'}", "config.yaml:1:9: state.redis_url: must start with redis://"),
    ("tiers: {pro: {rpm: many}}", "config.yaml:1:15: tiers.pro.rpm: Input should be a valid integer"),
    ("users: {bob: {daily_budget_usd: -1}}", "config.yaml:1:15: users.bob.daily_budget_usd: Input should be greater"),
    (f"tiers: {{pro: {{}}}}\nauth: {{keys: [{{key_sha256: {ALICE}, user: a, tier: gold}}]}}",
     "keys.0.tier: unknown tier 'gold' (tiers: pro)"),
])
def test_a_bad_value_is_named_where_the_file_has_it(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text + "\n")
    assert message in str(raised.value) and str(raised.value).count(";") <= 1, str(raised.value)


def test_the_admin_view_masks_the_passwords_and_shows_each_setting_once(tmp_path: Path) -> None:
    settings = load(tmp_path, ISSUE)
    view = masked_config(settings)
    assert view["database"]["url"] == f"postgresql://cascadeflow:{MASK}@127.0.0.1:5432/cascadeflow"
    assert view["state"]["redis_url"] == f"redis://:{MASK}@127.0.0.1:6379/0"
    assert view["auth"]["store"] == view["spend"]["url"] == view["database"]["url"]
    assert view["auth"]["redis_url"] == view["cache"]["redis_url"] == view["state"]["redis_url"]
    assert "db-secret" not in str(view) and "redis-secret" not in str(view)
    assert view["tiers"]["pro"]["rpm"] == 60 and "tiers" not in view["auth"] and "users" not in view["auth"]


def test_a_dump_validates_again_for_live_reloads(tmp_path: Path) -> None:
    settings = load(tmp_path, ISSUE)
    assert Settings(**settings.model_dump()) == settings
    assert effective_settings(settings, settings) == settings
    changed = load(tmp_path, ISSUE.replace("rpm: 60", "rpm: 61"))
    assert changed_paths(settings, changed) == ["tiers.pro.rpm"]
