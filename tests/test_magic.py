"""The %gsql magics in a real IPython shell: one-line errors, bound parameters, outputs."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jupyter_gov.magic import parse_line
from jupyter_gov.result import GovernedResult


@pytest.fixture
def shell(demo_connector):
    shell = InteractiveShell()
    shell.extension_manager.load_extension("jupyter_gov")
    magic = shell.magics_manager.registry["GovMagic"]
    original = magic.session

    def session(user=None):  # share the demo database built once per test run
        s = original(user)
        s.use_connector("demo", demo_connector)
        return s

    magic.session = session
    yield shell
    shell.extension_manager.unload_extension("jupyter_gov")
    InteractiveShell.clear_instance()


def test_cell_magic_returns_a_governed_result(shell):
    result = shell.run_cell_magic("gsql", "--user bob", "SELECT email FROM customers LIMIT 2")
    assert isinstance(result, GovernedResult)
    assert result.masked_columns == {"email": "email"}
    assert all(v.startswith("***@") for (v,) in result.fetchall())


def test_line_magic_runs_the_rest_of_the_line(shell):
    result = shell.run_line_magic("gsql", "--user bob SELECT count(*) AS n FROM orders")
    assert result.fetchall() == [(50000,)] or result.fetchall()[0][0] > 0


def test_output_name_with_double_angle_assigns_the_result(shell):
    shell.run_cell_magic(
        "gsql", "--user bob by_status <<", "SELECT status, count(*) n FROM orders GROUP BY 1"
    )
    assert isinstance(shell.user_ns["by_status"], GovernedResult)
    again = shell.run_line_magic("gsql", "--user bob SELECT sum(n) FROM by_status")
    assert again.fetchall()[0][0] > 0


def test_dash_o_assigns_and_offers_pandas_and_polars(shell):
    shell.run_cell_magic("gsql", "--user bob -o seg", "SELECT segment FROM customers LIMIT 3")
    result = shell.user_ns["seg"]
    assert list(result.df().columns) == ["segment"]
    assert result.pl().height == 3
    assert result.relation.aggregate("count(*)").fetchone() == (3,)


def test_template_variables_are_bound_not_pasted(shell):
    shell.user_ns["name"] = "x' OR '1'='1"
    result = shell.run_cell_magic(
        "gsql", "--user alice", "SELECT count(*) FROM customers WHERE full_name = {{ name }}"
    )
    assert result.fetchall() == [(0,)]


def test_a_template_in_the_select_list_is_bound(shell):
    shell.user_ns["label"] = "x' OR '1'='1"
    result = shell.run_cell_magic("gsql", "--user bob", "SELECT {{ label }} AS label")
    assert result.fetchall() == [("x' OR '1'='1",)]


def test_colon_variables_are_bound(shell):
    shell.user_ns["seg"] = "smb"
    result = shell.run_cell_magic(
        "gsql", "--user bob", "SELECT DISTINCT segment FROM customers WHERE segment = :seg"
    )
    assert result.fetchall() == [("smb",)]


def test_undefined_variable_is_a_one_line_usage_error(shell):
    with pytest.raises(UsageError, match="no variable 'nope'"):
        shell.run_cell_magic("gsql", "--user bob", "SELECT * FROM orders WHERE status = :nope")


def test_denied_statement_shows_a_banner_not_a_traceback(shell, capsys):
    assert shell.run_cell_magic("gsql", "--user bob", "DROP TABLE customers") is None
    assert "DROP statements are not allowed" in capsys.readouterr().out


def test_unknown_option_is_a_usage_error(shell):
    with pytest.raises(UsageError, match="Unknown option --frobnicate"):
        shell.run_cell_magic("gsql", "--frobnicate", "SELECT 1")


def test_broken_policy_is_one_sentence(shell, tmp_path):
    broken = tmp_path / "policy.yaml"
    broken.write_text("version: 1\nname: x\nroles: {}\nconnections: {}\n")
    shell.run_line_magic("config", f"GovMagic.policy = {str(broken)!r}")
    with pytest.raises(UsageError, match=r"policy.yaml:3:8: roles"):
        shell.run_cell_magic("gsql", "", "SELECT 1")


def test_run_cell_never_crashes_the_kernel(shell):
    outcome = shell.run_cell("%%gsql --user bob\nSELEC broken sql")
    assert outcome.error_in_exec is None  # shown as a denied banner


def test_displaylimit_is_configurable(shell):
    shell.run_line_magic("config", "GovMagic.displaylimit = 3")
    result = shell.run_cell_magic("gsql", "--user bob", "SELECT order_id FROM orders LIMIT 10")
    assert result.displaylimit == 3
    assert "7 more rows" in repr(result)


def test_limit_option_is_a_server_side_limit(shell):
    result = shell.run_cell_magic("gsql", "--user bob --limit 4", "SELECT * FROM orders")
    assert result.rows == 4
    assert "LIMIT 4" in result.plan.rewritten_sql


def test_tables_lists_columns_with_your_mask(shell):
    listing = shell.run_line_magic("gsql", "--user bob --tables")
    assert "email" in repr(listing) and "email → email" in repr(listing)


def test_explain_shows_the_rewritten_sql(shell):
    explained = shell.run_line_magic("gsql", "--user bob --explain SELECT email FROM customers")
    assert '"main"."customers"' in repr(explained)


def test_parse_line_takes_connection_output_and_purpose():
    args = parse_line("demo -o out --purpose 'quarterly report' --limit 5", "SELECT 1", {"demo"})
    assert (args.connection, args.out, args.purpose, args.limit) == (
        "demo",
        "out",
        "quarterly report",
        5,
    )
    assert args.sql == "SELECT 1"


def test_parse_line_keeps_quotes_in_line_sql():
    args = parse_line("SELECT 'a b' AS x", None, {"demo"})
    assert args.sql == "SELECT 'a b' AS x"


def test_login_with_the_local_provider_says_who_you_are(shell, capsys):
    shell.run_line_magic("gsql_login", "")
    assert "Signed in as" in capsys.readouterr().out


def test_logout_without_a_sign_in_says_so(shell, capsys):
    shell.run_line_magic("gsql_logout", "")
    assert "no sign-in to forget" in capsys.readouterr().out


def test_whoami_shows_roles_and_policy(shell, capsys):
    shell.run_line_magic("gsql_whoami", "carol")
    out = capsys.readouterr().out
    assert "Carol [carol] via local (unverified); roles: analyst; policy demo@" in out


# -- options: one parser (IPython's magic_arguments), complete usage, one-sentence errors ----

EVERY_OPTION = (
    "-o NAME",
    "--out NAME",
    "--connection NAME",
    "--save PATH",
    "--purpose TEXT",
    "--limit N",
    "--user NAME",
    "--unmask TAGS",
    "--explain",
    "--tables",
    "--quiet",
    "CONNECTION",
    "NAME <<",
)


@pytest.mark.parametrize("magic", ["%gsql", "%%gsql"])
def test_help_lists_every_option(shell, magic):
    shown = shell.object_inspect_mime(magic)["text/plain"]
    missing = [option for option in EVERY_OPTION if option not in shown]
    assert missing == []


def test_every_option_in_the_usage_is_one_the_magic_accepts():
    from jupyter_gov.magic import OPTIONS

    flags = {word for option in OPTIONS for word in option.args if word.startswith("-")}
    assert flags == {
        "-o",
        "--out",
        "--connection",
        "--save",
        "--purpose",
        "--limit",
        "--user",
        "--unmask",
        "--explain",
        "--tables",
        "--quiet",
    }


def test_quiet_keeps_the_result_without_showing_it(shell):
    shown = shell.run_cell_magic("gsql", "--user bob --quiet -o kept", "SELECT 1 AS one")
    assert shown is None and shell.user_ns["kept"].fetchall() == [(1,)]


def test_connection_option_chooses_the_connection(shell):
    result = shell.run_cell_magic("gsql", "--user bob --connection demo", "SELECT 1 AS one")
    assert result.plan.connection == "demo"


def test_an_unknown_connection_is_one_sentence(shell):
    with pytest.raises(UsageError, match="There is no connection named 'nope'"):
        shell.run_cell_magic("gsql", "--user bob --connection nope", "SELECT 1")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--limit many", "--limit takes a whole number of rows, not 'many'"),
        ("--limit", "--limit needs a value"),
        ("-o 2x", "'2x' is not a valid variable name for -o"),
        ("--purpose 'unclosed", "Could not read the value of --purpose"),
        ("-x", "Unknown option -x; see %gsql?"),
    ],
)
def test_a_bad_option_is_one_sentence(shell, line, message):
    with pytest.raises(UsageError) as caught:
        shell.run_cell_magic("gsql", line, "SELECT 1")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_bad_options_never_show_a_traceback(shell, capsys):
    outcome = shell.run_cell("%%gsql --limit many\nSELECT 1")
    shown = capsys.readouterr()
    assert "Traceback" not in shown.out + shown.err
    assert isinstance(outcome.error_in_exec, UsageError)


def test_login_flow_takes_device_or_browser(shell):
    with pytest.raises(UsageError, match="invalid choice: 'sideways'"):
        shell.run_line_magic("gsql_login", "--flow sideways")


def test_logout_takes_no_arguments(shell):
    with pytest.raises(UsageError, match="unrecognized arguments: now"):
        shell.run_line_magic("gsql_logout", "now")


def test_the_session_seams_are_public(shell, demo_connector):
    magic = shell.magics_manager.registry["GovMagic"]
    session = magic.session("bob")
    session.use_connector("demo", demo_connector)
    assert session.connector("demo") is demo_connector
    assert session.dialect("demo") == "duckdb"


def test_a_result_counts_its_rows_as_row_count(shell):
    result = shell.run_cell_magic("gsql", "--user bob", "SELECT order_id FROM orders LIMIT 3")
    assert result.row_count == result.rows == 3  # ``rows`` stays as the count's old name
    payload = result.to_dict()
    assert payload["row_count"] == 3 and len(payload["rows"]) == 3


def test_whoami_shows_the_policys_short_hash(shell, capsys):
    magic = shell.magics_manager.registry["GovMagic"]
    policy = magic.loaded_policy()
    shell.run_line_magic("gsql_whoami", "bob")
    assert f"policy {policy.name}@{policy.short_hash}" in capsys.readouterr().out
    assert policy.short_hash == policy.hash[:12]


def test_classify_in_gateway_mode_says_where_to_run_it(shell):
    magic = shell.magics_manager.registry["GovMagic"]
    magic.gateway = "grpc://127.0.0.1:9"  # never contacted: the refusal comes first
    try:
        with pytest.raises(UsageError, match="where the gateway runs"):
            shell.run_line_magic("gsql_classify", "")
    finally:
        magic.gateway = None
