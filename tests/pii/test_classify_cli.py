"""``jupyter-gov classify``, ``%gsql_classify`` and ``jupyter-gov detokenize``."""

from __future__ import annotations

import secrets

import pytest
import yaml
from IPython.core.interactiveshell import InteractiveShell

from jupyter_gov.cli import main
from jupyter_gov.pii.detect import scrub_values
from jupyter_gov.pii.operators import KEYS_ENV, load_keyring, operator_for
from jupyter_gov.policy import Policy


@pytest.fixture
def auto_policy_file(tmp_path, demo_auto_policy):
    path = tmp_path / "policy.yaml"
    data = {**demo_auto_policy.data, "pii": {"detokenize_roles": ["admin"]}}
    path.write_text(yaml.safe_dump(data))
    return path


def test_classify_prints_and_writes_a_block_to_review_and_pin(auto_policy_file, tmp_path, capsys):
    out = tmp_path / "proposed.yaml"
    code = main(
        ["classify", "--policy", str(auto_policy_file), "--user", "bob", "--write", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert '- "main.customers.email"  # confidence 1.00, 500/500 sampled values' in printed
    proposed = yaml.safe_load(out.read_text())["classifications"]
    assert proposed["free_text"] == ["main.support_tickets.body"]
    pinned = {**yaml.safe_load(auto_policy_file.read_text()), "unclassified": "deny"}
    pinned["classifications"] = {**pinned["classifications"], **proposed}
    policy = Policy.from_text(yaml.safe_dump(pinned))
    assert policy.tags_for("customers", "ssn", "main") == ("ssn",)


def test_classify_is_refused_to_a_caller_without_a_role(auto_policy_file, capsys):
    assert main(["classify", "--policy", str(auto_policy_file), "--user", "eve"]) == 3
    assert "has no role" in capsys.readouterr().err


def test_gsql_classify_prints_the_block_in_a_notebook(demo_connector, auto_policy_file, capsys):
    shell = InteractiveShell()
    shell.extension_manager.load_extension("jupyter_gov")
    try:
        magic = shell.magics_manager.registry["GovMagic"]
        magic.policy = str(auto_policy_file)
        original = magic.session

        def session(user=None):
            s = original(user)
            s.use_connector("demo", demo_connector)
            return s

        magic.session = session
        shell.run_line_magic("gsql_classify", "")
    finally:
        shell.extension_manager.unload_extension("jupyter_gov")
        InteractiveShell.clear_instance()
    assert '- "main.customers.phone"' in capsys.readouterr().out


def test_detokenize_command_reverses_tokens_for_an_authorized_role(
    auto_policy_file, monkeypatch, capsys
):
    key = f"hex:{secrets.token_hex(32)}"
    monkeypatch.setenv(KEYS_ENV, key)
    ring = load_keyring({KEYS_ENV: key}, auto_policy_file.parent, "UNUSED")
    token = scrub_values(["call +1 415-555-0132"], operator=operator_for("encrypt", ring))[0]
    assert main(["detokenize", "--policy", str(auto_policy_file), "--user", "alice", token]) == 0
    assert capsys.readouterr().out == "call +1 415-555-0132\n"
    assert main(["detokenize", "--policy", str(auto_policy_file), "--user", "bob", token]) == 3
    err = capsys.readouterr().err
    assert "may not reverse PII tokens" in err and "415" not in err
