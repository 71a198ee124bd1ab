"""``unclassified: auto`` and ``scan_results``: PII nobody classified is masked anyway."""

from __future__ import annotations

import json

import pytest

from jupyter_gov.connectors.duckdb import DuckDBConnector
from jupyter_gov.engine import GovernedSession
from jupyter_gov.policy import Policy
from jupyter_gov.result import banner_text
from tests.adversarial.oracle import Reference, check
from tests.adversarial.test_masking_oracle import COLUMN_SHAPES, ROW_SHAPES
from tests.pii.conftest import auto_policy

#: Demo columns the auto policy leaves unclassified, which hold detectable PII.
UNCLASSIFIED = {
    "customers": ("customer_id", ("email", "phone", "ssn", "credit_card")),
    "support_tickets": ("ticket_id", ("body",)),
}


@pytest.fixture
def auto_session(demo_connector: DuckDBConnector, demo_auto_policy: Policy):
    def make(user: str, policy: Policy | None = None) -> GovernedSession:
        session = GovernedSession(policy or demo_auto_policy, user)
        session.use_connector("demo", demo_connector)
        return session

    return make


def test_unclassified_pii_columns_are_masked_on_the_first_query(auto_session, raw):
    row = auto_session("bob").sql("SELECT * FROM customers WHERE customer_id = 1").arrow()
    email, ssn, card = raw("SELECT email, ssn, credit_card FROM customers WHERE customer_id = 1")[0]
    values = row.to_pylist()[0]
    assert values["email"] == "***@" + email.split("@")[1]
    assert values["ssn"] == "*******" + ssn[-4:]
    assert values["credit_card"].endswith(card[-4:]) and card[:4] not in values["credit_card"]


def test_free_text_nobody_classified_is_scrubbed_in_the_database(auto_session):
    session = auto_session("bob")
    result = session.sql("SELECT body FROM support_tickets WHERE body LIKE '%@%' LIMIT 5")
    assert result.arrow().num_rows == 0  # the predicate sees the scrubbed text too
    bodies = session.sql("SELECT body FROM support_tickets").arrow().column(0).to_pylist()
    assert any("<EMAIL_ADDRESS>" in b for b in bodies)
    assert (
        "scrub"
        in session.sql("SELECT body FROM support_tickets LIMIT 1").plan.masked_columns["body"]
    )


def test_a_role_whose_mask_is_none_still_sees_raw_values(auto_session, raw):
    email = raw("SELECT email FROM customers WHERE customer_id = 1")[0][0]
    row = auto_session("alice").sql("SELECT email FROM customers WHERE customer_id = 1 LIMIT 1")
    assert row.arrow().column(0).to_pylist() == [email]


def test_classification_events_carry_tags_and_counts_never_values(auto_session, raw):
    session = auto_session("bob")
    session.sql("SELECT count(*) FROM orders")
    events = session.audit.events(kinds=["classification"])
    found = {(e["detail"]["table"], e["detail"]["column"]): e["detail"] for e in events}
    assert found[("customers", "email")]["tag"] == "email"
    assert found[("customers", "email")]["sample_size"] == 500
    assert found[("support_tickets", "body")]["tag"] == "free_text"
    assert ("orders", "amount") not in found  # numbers that merely have 7 digits
    text = json.dumps(events, default=str)
    for (value,) in raw("SELECT email FROM customers LIMIT 500"):
        assert value not in text


def test_profiling_runs_once_per_catalog_version(auto_session):
    session = auto_session("bob")
    session.sql("SELECT 1")
    first = len(session.audit.events(kinds=["classification"]))
    session.sql("SELECT count(*) FROM customers")
    assert len(session.audit.events(kinds=["classification"])) == first > 0


def test_the_banner_says_which_columns_looked_like_what(auto_session):
    session = auto_session("bob")
    result = session.sql("SELECT email, body FROM customers, support_tickets LIMIT 1")
    banner = banner_text(result.plan, session.identity)
    assert "customers.email looks like email: masked" in banner
    assert "support_tickets.body looks like free_text: masked" in banner


def _attacks() -> list:
    cases = []
    columns = [(t, k, c) for t, (k, cs) in UNCLASSIFIED.items() for c in cs]
    for i, (shape, (template, ordered)) in enumerate(COLUMN_SHAPES.items()):
        table, key, column = columns[i % len(columns)]
        sql = template.format(t=table, k=key, c=column, ct=f"CAST({column} AS VARCHAR)")
        cases.append(pytest.param(sql, ordered, id=f"{table}.{column}-{shape}"))
    for table, (key, _) in UNCLASSIFIED.items():
        for shape, (template, ordered) in ROW_SHAPES.items():
            # Whole-row shapes over 10,000 customers take seconds each to search for
            # leaks: the default run keeps two of them, ``make stress`` runs them all.
            slow = table == "customers" and shape not in ("star", "row_to_json")
            cases.append(
                pytest.param(
                    template.format(t=table, k=key),
                    ordered,
                    id=f"{table}-{shape}",
                    marks=[pytest.mark.stress] if slow else [],
                )
            )
    return cases


@pytest.fixture(scope="module")
def bob_reference(demo_connector, demo_policy, tmp_path_factory):
    """What the auto policy shows bob for ``SELECT *``, as a plain database."""
    from tests.adversarial.conftest import MASK_KEY, without_approvals

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_GOV_HOME", str(tmp_path_factory.mktemp("pii-reference")))
        patch.setenv("JUPYTER_GOV_MASK_KEY", MASK_KEY)
        session = GovernedSession(without_approvals(auto_policy(demo_policy)), "bob")
        session.use_connector("demo", demo_connector)
        return Reference.materialize(lambda sql: session.sql(sql).arrow(), UNCLASSIFIED)


@pytest.fixture(scope="module")
def bob_auto(demo_connector, demo_policy, tmp_path_factory):
    """One auto-classifying session for bob shared by the oracle shapes (profiled once)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_GOV_HOME", str(tmp_path_factory.mktemp("pii-bob")))
        session = GovernedSession(auto_policy(demo_policy), "bob")
        session.use_connector("demo", demo_connector)
        yield session


@pytest.mark.parametrize(("sql", "ordered"), _attacks())
def test_nothing_unclassified_leaks_through_the_oracle_shapes(
    bob_auto, bob_reference, sql, ordered
):
    check(lambda: bob_auto.sql(sql).arrow(), bob_reference, sql, ordered=ordered)


def test_scan_results_scrubs_and_reports_unclassified_result_columns(demo_connector, demo_policy):
    policy = Policy({**demo_policy.data, "scan_results": True})
    session = GovernedSession(policy, "bob")
    session.use_connector("demo", demo_connector)
    result = session.sql(
        "SELECT 'pay to DE89370400440532013000, key sk_live_4eC39HqLyjWDarjtT1zdp7dc' AS note, "
        "'order 4111111111111112' AS ref"
    )
    assert result.arrow().to_pylist() == [
        {"note": "pay to <IBAN_CODE>, key <SECRET>", "ref": "order 4111111111111112"}
    ]
    assert "note: scrubbed 1 IBAN_CODE, 1 SECRET" in banner_text(result.plan, session.identity)
    [event] = session.audit.events(kinds=["classification"])
    assert event["detail"]["entities"] == {"IBAN_CODE": 1, "SECRET": 1}


def test_the_pii_policy_keys_are_validated_by_the_schema(demo_auto_policy):
    import yaml

    from jupyter_gov.errors import PolicyError

    text = yaml.safe_dump({**demo_auto_policy.data, "scan_results": True})
    assert Policy.from_text(text).auto_classify
    with pytest.raises(PolicyError, match="sample_rows"):
        Policy.from_text(yaml.safe_dump({**demo_auto_policy.data, "pii": {"sample_rows": 0}}))


def test_a_table_that_cannot_be_sampled_is_reported_as_failed(demo_connector):
    from jupyter_gov.pii.classify import profile_catalog

    findings, failed = profile_catalog(
        demo_connector, None, "duckdb", {("main", "no_such_table"): ["email"]}
    )
    assert findings == [] and failed == [("main", "no_such_table")]


def test_columns_left_unprofiled_are_redacted_for_every_role(demo_auto_policy):
    derived = demo_auto_policy.with_auto_findings([], [("main", "late", "notes")])
    for role in demo_auto_policy.roles:
        spec, tags = derived.column_mask("late", "notes", (role,), "main")
        assert (spec.function, tags) == ("redact", ("unprofiled",))


def test_auto_without_the_pii_extra_refuses_to_run_unprofiled(auto_session, monkeypatch):
    from jupyter_gov.errors import PolicyError
    from jupyter_gov.pii import auto

    monkeypatch.setattr(auto, "_MISSING", ImportError("numpy"))
    with pytest.raises(PolicyError, match="needs the pii extra"):
        auto_session("bob").sql("SELECT email FROM customers LIMIT 1")


def test_pii_role_lists_must_name_known_roles(demo_policy):
    from jupyter_gov.errors import PolicyError

    with pytest.raises(PolicyError, match=r"pii\.detokenize_roles names unknown role"):
        Policy({**demo_policy.data, "pii": {"detokenize_roles": ["root"]}})


def test_scan_results_uses_each_roles_operator_and_the_strictest_of_several(
    demo_connector, demo_policy, monkeypatch
):
    import secrets

    from jupyter_gov.pii.operators import KEYS_ENV

    monkeypatch.setenv(KEYS_ENV, f"hex:{secrets.token_hex(32)}")
    pii = {"operator": {"default": "replace", "analyst": "encrypt", "approver": "mask"}}
    policy = Policy({**demo_policy.data, "scan_results": True, "pii": pii})
    assert policy.pii_operator_for(("analyst", "approver")) == "mask"
    session = GovernedSession(policy, "bob")
    session.use_connector("demo", demo_connector)
    [note] = session.sql("SELECT 'mail jane@example.com' AS note").arrow().column(0).to_pylist()
    assert note.startswith("mail <EMAIL_ADDRESS:enc:") and "jane" not in note


def test_a_column_classified_under_a_none_mask_is_not_profiled_and_stays_raw(
    demo_connector, demo_auto_policy, raw
):
    data = dict(demo_auto_policy.data)
    data["classifications"] = {**data["classifications"], "public": ["customers.phone"]}
    data["masks"] = {**data["masks"], "public": {"default": "none"}}
    session = GovernedSession(Policy(data), "bob")
    session.use_connector("demo", demo_connector)
    got = session.sql("SELECT phone FROM customers WHERE customer_id = 1").arrow()
    assert got.column(0).to_pylist() == [
        raw("SELECT phone FROM customers WHERE customer_id = 1")[0][0]
    ]
    columns = {e["detail"].get("column") for e in session.audit.events(kinds=["classification"])}
    assert "phone" not in columns and "email" in columns


def test_scan_results_cannot_be_dodged_by_naming_a_column_like_a_masked_one(
    demo_connector, demo_policy
):
    policy = Policy({**demo_policy.data, "scan_results": True})
    session = GovernedSession(policy, "bob")
    session.use_connector("demo", demo_connector)
    result = session.sql(
        "SELECT email, 'card 4111 1111 1111 1111' AS email FROM customers LIMIT 1"
    ).arrow()
    assert "4111 1111 1111 1111" not in str(result.to_pylist())
