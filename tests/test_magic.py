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
