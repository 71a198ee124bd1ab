"""Policy files validate against the published schema; errors point at the line."""

from __future__ import annotations

import json

import jsonschema
import pytest

from jupyter_gov.errors import PolicyError
from jupyter_gov.identity import Identity
from jupyter_gov.policy import Policy, schema

MINIMAL = """\
version: 1
name: minimal
roles:
  analyst: {groups: [analysts]}
connections:
  demo: {url: "duckdb:demo"}
"""


def test_demo_policy_validates_against_the_published_schema():
    policy = Policy.load()
    jsonschema.Draft202012Validator(schema()).validate(policy.data)


def test_schema_is_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(schema())


def test_unknown_key_is_reported_with_line_and_column():
    text = MINIMAL.replace("groups: [analysts]", "grops: [analysts]")
    with pytest.raises(PolicyError, match=r"p\.yaml:4:12: roles\.analyst: unknown key"):
        Policy.from_text(text, "p.yaml")


def test_invalid_mask_name_is_reported_at_its_line():
    text = MINIMAL + "masks:\n  email: {default: scramble}\n"
    with pytest.raises(PolicyError, match=r"p\.yaml:8:\d+: masks\.email\.default"):
        Policy.from_text(text, "p.yaml")


def test_yaml_syntax_error_names_the_position():
    with pytest.raises(PolicyError, match=r"p\.yaml:\d+:\d+: the policy is not valid YAML"):
        Policy.from_text("version: 1\nname: [unclosed\n", "p.yaml")


def test_missing_file_is_one_sentence(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        Policy.load(tmp_path / "nope.yaml")


def test_masks_naming_an_unknown_role_are_rejected():
    text = MINIMAL + "masks:\n  email: {default: redact, admn: none}\n"
    with pytest.raises(PolicyError, match=r"unknown role\(s\) \['admn'\]"):
        Policy.from_text(text)


def test_content_hash_changes_with_content_not_formatting():
    a = Policy.from_text(MINIMAL)
    b = Policy.from_text(
        MINIMAL.replace('  demo: {url: "duckdb:demo"}', "  demo:\n    url: duckdb:demo")
    )
    c = Policy.from_text(MINIMAL.replace("minimal", "other"))
    assert a.hash == b.hash != c.hash


def test_roles_come_from_groups_users_and_claims():
    text = MINIMAL + ""
    data = Policy.from_text(text).data
    data["roles"]["auditor"] = {"users": ["zoe"]}
    data["roles"]["emea"] = {"claims": {"region": ["EMEA"]}}
    policy = Policy(data)
    zoe = Identity("zoe", "Zoe", "local", groups=("analysts",), attributes={"region": "EMEA"})
    assert policy.roles_for(zoe) == ("analyst", "auditor", "emea")


def test_classified_tag_without_a_mask_rule_is_redacted():
    policy = Policy.from_text(MINIMAL + "classifications:\n  secret: ['t.s']\n")
    spec, tags = policy.column_mask("t", "s", ("analyst",))
    assert (spec.function, tags) == ("redact", ("secret",))


def test_unclassified_default_can_deny():
    policy = Policy.from_text(MINIMAL + "unclassified: deny\n")
    assert policy.column_mask("t", "anything", ("analyst",))[0].function == "deny"


def test_unclassified_column_denied_by_policy_denies_the_query(session_for, demo_policy):
    data = json.loads(json.dumps(demo_policy.data))
    data["unclassified"] = "deny"
    from jupyter_gov.result import QueryDenied

    with pytest.raises(QueryDenied) as denied:
        session_for("bob", Policy(data)).sql("SELECT city FROM customers")
    assert denied.value.plan.rules == ["column-denied"]
