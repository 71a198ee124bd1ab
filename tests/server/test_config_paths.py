"""The sidebar, the CLI and a kernel read and write the same store under every configuration.

Each test takes one configuration path (default home, ``$JUPYTER_GOV_HOME``, the policy's
``audit.store``, ``$JUPYTER_GOV_POLICY``, ``$JUPYTER_GOV_AUDIT_STORE``, explicit flags and
traits over the environment), writes through one front end and reads through the others:
the server's API (``jp_fetch``), ``jupyter_gov.cli.main`` in-process, and the ``%%gsql``
magic in an IPython shell. Every front end must see the same events, in the expected file,
and the stores the configuration overrides must never be created.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

from jupyter_gov.audit import AuditStore
from jupyter_gov.cli import main
from jupyter_gov.config import ENV_AUDIT_STORE, ENV_HOME, ENV_POLICY
from jupyter_gov.policy.loader import demo_policy_text
from jupyter_gov.server import CORE_SETTING

API = ("jupyter-gov", "api")
UPDATE = "UPDATE orders SET status = 'cancelled' WHERE order_id = 11"


@dataclass
class Layout:
    """One configuration path: where every front end must meet, and how each is told."""

    store: Path | str  # the one store every front end must read and write (file or URL)
    server: dict[str, str] = field(default_factory=dict)  # c.GovServer traits
    cli: list[str] = field(default_factory=list)  # flags every CLI call gets
    magic: dict[str, str] = field(default_factory=dict)  # %config GovMagic traits
    untouched: tuple[Path, ...] = ()  # stores this configuration overrides


def policy_file(folder: Path, store: str) -> Path:
    """The demo policy with ``audit: {store: ...}``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "policy.yaml"
    path.write_text(f"{demo_policy_text()}\naudit:\n  store: {store}\n")
    return path


def _default_home(tmp: Path, mp: pytest.MonkeyPatch, data_dir: Path) -> Layout:
    mp.delenv(ENV_HOME)
    return Layout(store=data_dir / "jupyter_gov" / "audit.sqlite")


def _gov_home(tmp: Path, mp: pytest.MonkeyPatch, data_dir: Path) -> Layout:
    mp.setenv(ENV_HOME, str(tmp / "custom-home"))
    return Layout(
        store=tmp / "custom-home" / "audit.sqlite",
        untouched=(data_dir / "jupyter_gov" / "audit.sqlite",),
    )


def _policy_store(tmp: Path, mp: pytest.MonkeyPatch, data_dir: Path) -> Layout:
    # Relative to the policy file, not to any front end's working directory.
    policy = str(policy_file(tmp / "conf", "logs/audit.sqlite"))
    return Layout(
        store=tmp / "conf" / "logs" / "audit.sqlite",
        server={"policy": policy},
        cli=["--policy", policy],
        magic={"policy": policy},
        untouched=(Path(os.environ[ENV_HOME]) / "audit.sqlite",),
    )


def _env_policy(tmp: Path, mp: pytest.MonkeyPatch, data_dir: Path) -> Layout:
    mp.setenv(ENV_POLICY, str(policy_file(tmp / "conf", str(tmp / "policy-store.sqlite"))))
    return Layout(
        store=tmp / "policy-store.sqlite",
        untouched=(Path(os.environ[ENV_HOME]) / "audit.sqlite",),
    )


def _env_store(tmp: Path, mp: pytest.MonkeyPatch, data_dir: Path) -> Layout:
    mp.setenv(ENV_POLICY, str(policy_file(tmp / "conf", str(tmp / "policy-store.sqlite"))))
    mp.setenv(ENV_AUDIT_STORE, str(tmp / "env-store.sqlite"))
    return Layout(
        store=tmp / "env-store.sqlite",
        untouched=(tmp / "policy-store.sqlite", Path(os.environ[ENV_HOME]) / "audit.sqlite"),
    )


def _explicit(tmp: Path, mp: pytest.MonkeyPatch, data_dir: Path) -> Layout:
    _env_store(tmp, mp, data_dir)
    flag = f"sqlite:///{tmp / 'flag-store.sqlite'}"
    return Layout(
        store=tmp / "flag-store.sqlite",
        server={"audit_store": flag},
        cli=["--store", flag],
        magic={"audit_store": flag},
        untouched=(
            tmp / "env-store.sqlite",
            tmp / "policy-store.sqlite",
            Path(os.environ[ENV_HOME]) / "audit.sqlite",
        ),
    )


def _broken_policy(tmp: Path, mp: pytest.MonkeyPatch, data_dir: Path) -> Layout:
    mp.setenv(ENV_POLICY, str(tmp / "missing.yaml"))
    return Layout(store=Path(os.environ[ENV_HOME]) / "audit.sqlite")


def _team_store(tmp: Path, mp: pytest.MonkeyPatch, data_dir: Path, url: str) -> Layout:
    # The policy names a PostgreSQL store whose host comes from the environment (${VAR}).
    mp.setenv("GOV_TEAM_STORE_HOST", "127.0.0.1")
    named = url.replace("@127.0.0.1:", "@${GOV_TEAM_STORE_HOST}:")
    mp.setenv(ENV_POLICY, str(policy_file(tmp / "conf", f'"{named}"')))
    return Layout(store=url, untouched=(Path(os.environ[ENV_HOME]) / "audit.sqlite",))


LAYOUTS: dict[str, Callable[[Path, pytest.MonkeyPatch, Path], Layout]] = {
    "default_home": _default_home,
    "gov_home": _gov_home,
    "policy_store": _policy_store,
    "env_policy": _env_policy,
    "env_store": _env_store,
    "explicit": _explicit,
    "broken_policy": _broken_policy,
}


@pytest.fixture
def layout(request, tmp_path, monkeypatch, jp_environ, jp_data_dir) -> Layout:
    """The configuration named by the test's ``layout`` parameter, applied to the env."""
    if request.param == "team_store":
        url = request.getfixturevalue("team_store_schemas")()
        return _team_store(tmp_path, monkeypatch, jp_data_dir, url)
    return LAYOUTS[request.param](tmp_path, monkeypatch, jp_data_dir)


@pytest.fixture
def jp_server_config(layout: Layout) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"jupyter_gov": True}},
            "GovServer": {"user": "dave", **layout.server},
        }
    )


@pytest.fixture
def shell(layout: Layout, demo_connector) -> Iterator[InteractiveShell]:
    """An IPython shell with ``%load_ext jupyter_gov`` and the layout's ``%config`` lines."""
    shell = InteractiveShell(config=Config({"HistoryManager": {"enabled": False}}))
    shell.extension_manager.load_extension("jupyter_gov")
    magic = shell.magics_manager.registry["GovMagic"]
    for name, value in layout.magic.items():
        shell.run_line_magic("config", f"GovMagic.{name} = {value!r}")
    original = magic.session

    def session(user=None):  # the demo database, built once per test run
        governed = original(user)
        governed.use_connector("demo", demo_connector)
        return governed

    magic.session = session
    yield shell
    shell.extension_manager.unload_extension("jupyter_gov")
    InteractiveShell.clear_instance()


# -- the three front ends --------------------------------------------------------------------


def cli(capsys, layout: Layout, *argv: str) -> Any:
    status = main([*argv, *layout.cli])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out)


async def api(jp_fetch, *path: str, method: str = "GET", **params: Any) -> Any:
    kwargs: dict[str, Any] = {"method": method, "params": params}
    if method == "POST":
        kwargs["body"] = "{}"
    try:
        response = await jp_fetch(*API, *path, **kwargs)
    except HTTPClientError as error:  # pragma: no cover - the message says what went wrong
        pytest.fail(f"{'/'.join(path)}: {error.code} {error.response and error.response.body}")
    return json.loads(response.body)


def kernel_audit(shell: InteractiveShell) -> AuditStore:
    return shell.magics_manager.registry["GovMagic"].session().audit


def kernel_query(shell: InteractiveShell, alias: str) -> str:
    """Run a query as bob through ``%%gsql``; return its query id."""
    sql = f"SELECT email AS {alias} FROM customers LIMIT 1"
    return shell.run_cell_magic("gsql", "--user bob", sql).query_id


def cli_query(capsys, layout: Layout, alias: str) -> str:
    sql = f"SELECT email AS {alias} FROM customers LIMIT 1"
    return cli(capsys, layout, "query", "--user", "bob", "--format", "json", sql)["query_id"]


# -- what "the same store" means -------------------------------------------------------------


Event = tuple[int, str, str]  # id, kind, query_id


def listed(events: list[dict[str, Any]]) -> list[Event]:
    return [(e["id"], e["kind"], e["query_id"]) for e in events]


async def assert_one_store(jp_fetch, capsys, shell, layout: Layout) -> list[Event]:
    """Sidebar, CLI and kernel list the same events, from ``layout.store``, and verify it."""
    if isinstance(layout.store, Path):
        assert layout.store.is_file(), f"nothing was written to {layout.store}"
    sidebar = listed((await api(jp_fetch, "audit"))["events"])
    command = listed(cli(capsys, layout, "audit", "tail", "-n", "500", "--format", "json"))
    kernel = listed(kernel_audit(shell).events(limit=500))
    on_disk = listed(AuditStore(layout.store).events(limit=500))
    assert sidebar == command == kernel == on_disk and on_disk
    chain = await api(jp_fetch, "audit", "verify")
    assert chain["ok"] and chain["rows"] == len(on_disk)
    assert cli(capsys, layout, "audit", "verify", "--format", "json")["head"] == chain["head"]
    for other in layout.untouched:
        assert not other.exists(), f"{other} was written, but {layout.store} is configured"
    return on_disk


def query_ids(events: list[Event]) -> set[str]:
    return {query_id for _, _, query_id in events}


# -- one test per configuration path ---------------------------------------------------------


@pytest.mark.parametrize("layout", ["default_home"], indirect=True)
async def test_default_home_kernel_writes_and_the_sidebar_and_cli_read_it(
    layout, shell, jp_fetch, capsys
):
    query_id = kernel_query(shell, "default_home")
    assert query_id in query_ids(await assert_one_store(jp_fetch, capsys, shell, layout))


@pytest.mark.parametrize("layout", ["gov_home"], indirect=True)
async def test_jupyter_gov_home_cli_writes_and_the_sidebar_and_kernel_read_it(
    layout, shell, jp_fetch, capsys
):
    query_id = cli_query(capsys, layout, "gov_home")
    assert query_id in query_ids(await assert_one_store(jp_fetch, capsys, shell, layout))


@pytest.mark.parametrize("layout", ["policy_store"], indirect=True)
async def test_policy_audit_store_kernel_requests_sidebar_approves_cli_sees_it(
    layout, shell, jp_fetch, capsys
):
    alice = shell.magics_manager.registry["GovMagic"].session("alice")
    request = alice.request_approval(UPDATE, justification="customer called")
    pending = await api(jp_fetch, "approvals")
    assert [a["id"] for a in pending["approvals"]] == [request.id]
    await api(jp_fetch, "approvals", request.id, "approve", method="POST")
    listed = cli(capsys, layout, "approvals", "list", "--state", "all", "--format", "json")
    assert [(r["id"], r["state"]) for r in listed] == [(request.id, "approved")]
    events = await assert_one_store(jp_fetch, capsys, shell, layout)
    approval_events = [kind for _, kind, _ in events if kind.startswith("approval_")]
    assert approval_events == ["approval_approved", "approval_requested"]


@pytest.mark.parametrize("layout", ["env_policy"], indirect=True)
async def test_environment_policy_with_a_store_cli_writes_and_the_others_read_it(
    layout, shell, jp_fetch, capsys
):
    query_id = cli_query(capsys, layout, "env_policy")
    assert query_id in query_ids(await assert_one_store(jp_fetch, capsys, shell, layout))


@pytest.mark.parametrize("layout", ["env_store"], indirect=True)
async def test_environment_store_beats_the_policy_store_for_every_front_end(
    layout, shell, jp_fetch, capsys
):
    query_id = kernel_query(shell, "env_store")
    assert query_id in query_ids(await assert_one_store(jp_fetch, capsys, shell, layout))


@pytest.mark.parametrize("layout", ["explicit"], indirect=True)
async def test_explicit_flag_and_traits_beat_the_environment(layout, shell, jp_fetch, capsys):
    in_kernel = kernel_query(shell, "explicit_kernel")
    from_cli = cli_query(capsys, layout, "explicit_cli")
    events = await assert_one_store(jp_fetch, capsys, shell, layout)
    assert {in_kernel, from_cli} <= query_ids(events)


@pytest.mark.parametrize("layout", ["team_store"], indirect=True)
async def test_team_store_in_postgresql_is_shared_by_kernel_sidebar_and_cli(
    layout, shell, jp_fetch, capsys
):
    alice = shell.magics_manager.registry["GovMagic"].session("alice")
    assert type(alice.audit).__name__ == "PostgresAuditStore"
    request = alice.request_approval(UPDATE, justification="customer called")
    pending = await api(jp_fetch, "approvals")
    assert [a["id"] for a in pending["approvals"]] == [request.id]
    await api(jp_fetch, "approvals", request.id, "approve", method="POST")
    listed = cli(capsys, layout, "approvals", "list", "--state", "all", "--format", "json")
    assert [(r["id"], r["state"]) for r in listed] == [(request.id, "approved")]
    query_id = kernel_query(shell, "team_store")
    stats = await api(jp_fetch, "audit", "stats")  # the sidebar's chart, via AuditReader
    assert sum(b["total"] for b in stats["buckets"]) == len(
        AuditStore(layout.store).events(kinds=["decision"], limit=500)
    )
    events = await assert_one_store(jp_fetch, capsys, shell, layout)
    assert query_id in query_ids(events)


# -- the server's one core ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["policy_store"], indirect=True)
async def test_server_keeps_one_store_and_one_approvals_store_across_requests(
    layout, jp_fetch, jp_web_app
):
    core = jp_web_app.settings[CORE_SETTING]
    await api(jp_fetch, "audit")
    await api(jp_fetch, "approvals")
    audit, approvals = core.audit(), core.approvals()
    await api(jp_fetch, "audit", "stats")
    await api(jp_fetch, "approvals")
    assert core.audit() is audit and core.approvals() is approvals
    assert audit.path == layout.store


@pytest.mark.parametrize("layout", ["policy_store"], indirect=True)
async def test_server_reads_the_policy_again_only_when_its_file_changes(
    layout, jp_fetch, jp_web_app
):
    core = jp_web_app.settings[CORE_SETTING]
    first = core.policy
    await api(jp_fetch, "policy")
    assert core.policy is first
    path = Path(layout.server["policy"])
    path.write_text(path.read_text().replace("name: ", "name: renamed-", 1))
    os.utime(path, ns=(0, 0))  # a different stamp even within the file system's resolution
    summary = await api(jp_fetch, "policy")
    assert core.policy is not first and summary["name"].startswith("renamed-")


@pytest.mark.parametrize("layout", ["broken_policy"], indirect=True)
async def test_server_does_not_guess_the_store_when_the_policy_does_not_load(layout, jp_fetch):
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(*API, "audit", method="GET")
    assert caught.value.code == 503
    assert "does not exist" in json.loads(caught.value.response.body)["message"]
    assert not layout.store.exists()  # the default store might not be the policy's
