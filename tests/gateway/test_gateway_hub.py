"""A JupyterHub API token is checked against the Hub by the gateway: the Hub says whose it
is; a token the Hub refuses, or one that belongs to a Hub service, is refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_gov.errors import IdentityError
from jupyter_gov.gateway.server import GatewayServer
from tests.identity.conftest import HubServer, hub_server  # noqa: F401  (the fixture)


@pytest.fixture
def hub_gateway(hub_server: HubServer, tmp_path: Path) -> Iterator[GatewayServer]:  # noqa: F811
    data = yaml.safe_load(files("jupyter_gov.policy").joinpath("demo.yaml").read_text())
    data["gateway"] = {"auth": ["jupyterhub"], "jupyterhub": {"api_url": hub_server.api_url}}
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(data))
    server = GatewayServer(policy)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(10)


def session(server: GatewayServer, token: str) -> Any:
    from jupyter_gov.connectors.gateway import GatewaySession

    return GatewaySession(server.address, token)


def test_a_hub_token_is_its_owner_with_the_hubs_groups(
    hub_gateway: GatewayServer,
    hub_server: HubServer,  # noqa: F811
) -> None:
    alice = session(hub_gateway, "good-token")
    result = alice.sql("SELECT email FROM customers LIMIT 1")
    assert result.identity.subject == "alice" and result.identity.auth_method == "jupyterhub"
    assert result.plan.roles == ("analyst",) and result.masked_columns == {"email": "email"}
    asked = len(hub_server.requests)
    alice.sql("SELECT 1 AS one")
    assert len(hub_server.requests) == asked  # cached for the Hub's cache_ttl


@pytest.mark.parametrize(
    ("token", "sentence"),
    [
        ("made-up-token", "refused to say who owns"),
        ("service-token", "belongs to a Hub service"),
        ("service:etl:secret", "does not accept service tokens"),
    ],
)
def test_tokens_the_hub_does_not_vouch_for_are_refused(
    hub_gateway: GatewayServer, token: str, sentence: str
) -> None:
    with pytest.raises(IdentityError, match=sentence):
        session(hub_gateway, token).sql("SELECT 1")


def test_a_hub_token_signs_in_at_the_pg_door_beside_flight_as_its_owner(
    hub_gateway: GatewayServer,
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
            password="good-token",
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
