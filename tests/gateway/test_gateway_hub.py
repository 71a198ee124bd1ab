"""A JupyterHub API token is checked against a real JupyterHub (``tests/hub_server.py``) by
the gateway: the Hub says whose it is; a token the Hub refuses (made up, revoked), or one that
belongs to a Hub service, is refused."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_gov.errors import IdentityError
from jupyter_gov.gateway.server import GatewayServer
from tests.hub_server import RealHub

pytestmark = pytest.mark.server


@pytest.fixture
def start_gateway(
    jupyterhub_server: RealHub,
    tmp_path: Path,
) -> Iterator[Callable[..., GatewayServer]]:
    """Start a gateway on the demo policy that accepts Hub tokens, with the Hub's answers
    kept ``cache_ttl`` seconds."""
    started: list[tuple[GatewayServer, threading.Thread]] = []

    def start(cache_ttl: float = 60) -> GatewayServer:
        data = yaml.safe_load(files("jupyter_gov.policy").joinpath("demo.yaml").read_text())
        hub = {"api_url": jupyterhub_server.api_url, "cache_ttl": cache_ttl}
        data["gateway"] = {"auth": ["jupyterhub"], "jupyterhub": hub}
        policy = tmp_path / f"policy-{len(started)}.yaml"
        policy.write_text(yaml.safe_dump(data))
        server = GatewayServer(policy)
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def hub_gateway(start_gateway: Callable[..., GatewayServer]) -> GatewayServer:
    return start_gateway()


def session(server: GatewayServer, token: str) -> Any:
    from jupyter_gov.connectors.gateway import GatewaySession

    return GatewaySession(server.address, token)


def test_a_hub_token_is_its_owner_with_the_hubs_groups(
    hub_gateway: GatewayServer,
    jupyterhub_server: RealHub,
) -> None:
    alice = session(hub_gateway, jupyterhub_server.issue_token("alice"))
    result = alice.sql("SELECT email FROM customers LIMIT 1")
    assert result.identity.subject == "alice" and result.identity.auth_method == "jupyterhub"
    assert result.plan.roles == ("analyst",) and result.masked_columns == {"email": "email"}


def test_the_hubs_answer_is_kept_for_the_cache_ttl(
    hub_gateway: GatewayServer,
    jupyterhub_server: RealHub,
) -> None:
    """Within ``cache_ttl`` (60 s here) the gateway does not ask the Hub again: a token
    revoked meanwhile still works until then (the documented price of the cache)."""
    token = jupyterhub_server.issue_token("alice")
    alice = session(hub_gateway, token)
    alice.sql("SELECT 1 AS one")
    jupyterhub_server.revoke_token(token)
    assert alice.sql("SELECT 1 AS one").identity.subject == "alice"


def test_a_revoked_hub_token_is_refused_once_the_cache_has_expired(
    start_gateway: Callable[..., GatewayServer],
    jupyterhub_server: RealHub,
) -> None:
    gateway = start_gateway(cache_ttl=0)
    token = jupyterhub_server.issue_token("alice")
    alice = session(gateway, token)
    assert alice.sql("SELECT 1 AS one").identity.subject == "alice"
    jupyterhub_server.revoke_token(token)
    with pytest.raises(IdentityError, match="refused to say who owns"):
        alice.sql("SELECT 1 AS one")


@pytest.mark.parametrize(
    ("token", "sentence"),
    [
        ("made-up-token", "refused to say who owns"),
        ("<the announcer service's Hub token>", "belongs to a Hub service"),
        ("service:etl:secret", "does not accept service tokens"),
    ],
)
def test_tokens_the_hub_does_not_vouch_for_are_refused(
    hub_gateway: GatewayServer,
    jupyterhub_server: RealHub,
    token: str,
    sentence: str,
) -> None:
    if token.startswith("<"):
        token = jupyterhub_server.service_token
    with pytest.raises(IdentityError, match=sentence):
        session(hub_gateway, token).sql("SELECT 1")


def test_a_hub_token_signs_in_at_the_pg_door_beside_flight_as_its_owner(
    hub_gateway: GatewayServer,
    jupyterhub_server: RealHub,
) -> None:
    """``gateway serve --pg-listen`` shares the Flight door's authenticator: a Hub token as
    the password is the Hub's answer about its owner, as it is over Flight."""
    import psycopg

    from jupyter_gov.gateway.server import _PgDoor

    door = _PgDoor(hub_gateway, "127.0.0.1:0", None, None)
    try:
        with psycopg.connect(
            host=door.host,
            port=door.port,
            dbname="governed",
            user="whoever",
            password=jupyterhub_server.issue_token("alice"),
            sslmode="disable",
            autocommit=True,
        ) as conn:
            email = conn.execute("SELECT email FROM customers LIMIT 1").fetchone()[0]
        with pytest.raises(psycopg.OperationalError, match="refused to say who owns"):
            psycopg.connect(
                host=door.host, port=door.port, dbname="g", password="made-up-token"
            ).close()
        event = door.server.audit.events(kinds=["result"], limit=1)[0]
    finally:
        door.close()
    assert email.startswith("***@")  # alice is an analyst: masked
    assert (event["subject"], event["auth_method"]) == ("alice", "jupyterhub")
