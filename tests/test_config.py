"""One configuration resolver: each setting's precedence, argument > environment > policy > home."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_gov.cli import main
from jupyter_gov.config import ENV_AUDIT_STORE, ENV_HOME, ENV_POLICY, resolve, resolve_store
from jupyter_gov.errors import PolicyError
from jupyter_gov.policy import Policy
from jupyter_gov.policy.loader import demo_policy_text


def policy_with_store(folder: Path, store: str) -> Path:
    """The demo policy with ``audit: {store: ...}``, written to ``folder/policy.yaml``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "policy.yaml"
    text = demo_policy_text()
    assert "\naudit:" not in text  # the demo policy names no store of its own
    path.write_text(f"{text}\naudit:\n  store: {store}\n")
    return path


def test_default_store_is_audit_sqlite_under_the_home(gov_home):
    settings = resolve()
    assert settings.home == gov_home.resolve()
    assert settings.audit_store == f"sqlite:///{gov_home.resolve() / 'audit.sqlite'}"
    assert settings.origins["audit_store"] == "default"
    assert settings.policy_source is None and settings.policy.origin == "<built-in demo policy>"


def test_default_home_is_the_jupyter_data_dir_without_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_HOME)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    assert resolve().home == tmp_path / "data" / "jupyter_gov"


def test_policy_store_beats_the_home(tmp_path):
    policy = policy_with_store(tmp_path / "conf", "/srv/gov/audit.sqlite")
    settings = resolve(policy=str(policy))
    assert settings.audit_store == "sqlite:////srv/gov/audit.sqlite"
    assert settings.origins["audit_store"] == "policy"


def test_relative_policy_store_is_relative_to_the_policy_file_not_the_cwd(tmp_path, monkeypatch):
    policy = policy_with_store(tmp_path / "conf", "logs/audit.sqlite")
    monkeypatch.chdir(tmp_path)
    expected = f"sqlite:///{(tmp_path / 'conf' / 'logs' / 'audit.sqlite').resolve()}"
    assert resolve(policy=str(policy)).audit_store == expected
    assert resolve(policy=Policy.load(policy)).audit_store == expected


def test_environment_store_beats_the_policy_store(tmp_path, monkeypatch):
    policy = policy_with_store(tmp_path / "conf", "/srv/gov/audit.sqlite")
    monkeypatch.setenv(ENV_AUDIT_STORE, str(tmp_path / "env.sqlite"))
    settings = resolve(policy=str(policy))
    assert settings.audit_store == f"sqlite:///{(tmp_path / 'env.sqlite').resolve()}"
    assert settings.origins["audit_store"] == "environment"


def test_argument_beats_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_AUDIT_STORE, str(tmp_path / "env.sqlite"))
    monkeypatch.setenv(ENV_POLICY, str(policy_with_store(tmp_path / "conf", "/srv/x.sqlite")))
    settings = resolve(policy="demo", audit_store=f"sqlite:///{tmp_path}/flag.sqlite")
    assert settings.audit_store == f"sqlite:///{tmp_path}/flag.sqlite"
    assert settings.policy_source is None  # "demo" given explicitly beats $JUPYTER_GOV_POLICY
    assert (settings.origins["audit_store"], settings.origins["policy"]) == ("argument",) * 2


def test_environment_policy_is_used_and_made_absolute(tmp_path, monkeypatch):
    policy_with_store(tmp_path / "conf", "/srv/x.sqlite")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_POLICY, "conf/policy.yaml")
    settings = resolve()
    assert settings.policy_source == str((tmp_path / "conf" / "policy.yaml").resolve())
    assert settings.origins["policy"] == "environment"


def test_empty_arguments_count_as_not_given(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_AUDIT_STORE, str(tmp_path / "env.sqlite"))
    assert resolve(policy="", audit_store="").origins["audit_store"] == "environment"


def test_other_store_kinds_pass_through_for_their_module_to_open():
    assert resolve(audit_store="postgresql://db/audit").audit_store == "postgresql://db/audit"


def test_masking_key_is_the_policy_variable_else_a_file_in_the_home(gov_home):
    key = resolve().mask_key
    assert key.env == "JUPYTER_GOV_MASK_KEY" and key.file == gov_home.resolve() / "mask.key"


def test_approvals_live_in_the_audit_store(tmp_path):
    settings = resolve(audit_store=str(tmp_path / "a.sqlite"))
    assert settings.approvals_store == settings.audit_store


def test_unknown_connection_is_one_sentence():
    with pytest.raises(PolicyError, match="connection"):
        resolve(connection="nope")


def test_missing_policy_file_is_one_sentence(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        resolve(policy=str(tmp_path / "missing.yaml"))


def test_store_alone_does_not_need_the_policy_when_named(tmp_path):
    url = resolve_store(policy=str(tmp_path / "missing.yaml"), audit_store="/x/a.sqlite")
    assert url == "sqlite:////x/a.sqlite"


def test_cli_config_says_where_each_setting_came_from(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_AUDIT_STORE, str(tmp_path / "env.sqlite"))
    assert main(["config", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["audit_store"].endswith("env.sqlite (environment)")
    assert shown["policy"] == "<built-in demo policy> (default)"


def test_connect_writes_to_the_store_the_policy_names(tmp_path):
    from jupyter_gov import connect

    session = connect(policy=str(policy_with_store(tmp_path / "conf", "audit.sqlite")))
    assert session.audit.path == (tmp_path / "conf" / "audit.sqlite").resolve()
    assert session.settings.origins["audit_store"] == "policy"


def test_connect_keyword_beats_the_environment(tmp_path, monkeypatch):
    from jupyter_gov import connect

    monkeypatch.setenv(ENV_AUDIT_STORE, str(tmp_path / "env.sqlite"))
    session = connect(audit=str(tmp_path / "kw.sqlite"))
    assert session.audit.path == (tmp_path / "kw.sqlite").resolve()


def test_a_team_store_url_is_kept_unexpanded_and_shown_without_its_password(monkeypatch):
    monkeypatch.setenv("GOV_STORE_PASSWORD", "env-secret-42")
    url = "postgresql://gov:${GOV_STORE_PASSWORD}@db.internal/audit?schema=team"
    settings = resolve(audit_store=url)
    assert settings.audit_store == url  # expanded only by the store, when it connects
    literal = resolve(audit_store="postgresql://gov:literal-pw@db.internal/audit")
    shown = str(settings.describe()) + str(literal.describe())
    assert "env-secret-42" not in shown and "literal-pw" not in shown
    assert "postgresql://gov:***@db.internal/audit?schema=team" in shown
