"""One kind of token, one ``auth_method``: through the Flight gateway, its PostgreSQL door
and the ``msal`` provider in a kernel alike; an application's client-credentials token is a
service identity, as the msal provider's service mode makes it.

Tokens come from the real OIDC test provider of ``tests/identity`` (oidc-provider-mock behind
a trustme CA): a person's ID token from the auth-code flow, and an application's access token
from the client-credentials grant.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from jupyter_gov.gateway.auth import Authenticator, is_app_token
from jupyter_gov.gateway.pgwire import TokenAuthenticator
from jupyter_gov.policy import Policy
from tests.gateway.conftest import id_token
from tests.identity.conftest import OidcServer

AUDIENCE = "api://jupyter-gov"


def policy_for(server: OidcServer) -> Policy:
    """A gateway accepting tokens for ``AUDIENCE`` from the test provider's tenant1."""
    from importlib.resources import files

    import yaml

    data = yaml.safe_load(files("jupyter_gov.policy").joinpath("demo.yaml").read_text())
    data["identity"] = {
        "provider": "msal",
        "oidc_authority": server.authority("tenant1"),
        "audience": AUDIENCE,
        "ca_bundle": server.ca_file,
    }
    data["roles"]["analyst"]["groups"] = ["analysts", "pipeline.run"]
    return Policy.from_text(yaml.safe_dump(data))


def app_token(server: OidcServer, client: str = "pipeline", secret: str = "pipeline-secret") -> str:
    """An application's own access token (client credentials) for ``AUDIENCE``."""
    response = requests.post(
        f"{server.authority('tenant1')}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client,
            "client_secret": secret,
            "scope": f"{AUDIENCE}/.default",
        },
        verify=server.ca_file,
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def doors(oidc_server: OidcServer) -> dict[str, Any]:
    policy = policy_for(oidc_server)
    flight = Authenticator(policy)
    return {
        "flight": lambda token: flight.identify(f"Bearer {token}"),
        "gateway-pg-door": flight.authenticate,
        "pgwire-alone": TokenAuthenticator(policy).authenticate,
    }


@pytest.mark.parametrize("door", ["flight", "gateway-pg-door", "pgwire-alone"])
def test_a_client_credentials_token_is_a_service_labelled_as_the_msal_provider_labels_it(
    doors: dict[str, Any],
    oidc_server: OidcServer,
    door: str,
) -> None:
    identity = doors[door](app_token(oidc_server))
    assert (identity.subject, identity.kind) == ("sp-pipeline", "service")
    assert identity.auth_method == "msal-client-credentials"  # tests/identity: msal's label
    assert identity.verified and identity.groups == ("pipeline.run",)


@pytest.mark.parametrize("door", ["flight", "gateway-pg-door", "pgwire-alone"])
def test_a_persons_token_has_the_msal_label_through_every_door(
    doors: dict[str, Any],
    oidc_server: OidcServer,
    door: str,
) -> None:
    identity = doors[door](id_token(oidc_server, "alice", client=AUDIENCE))
    assert (identity.subject, identity.kind, identity.auth_method) == ("alice", "user", "msal")


@pytest.mark.parametrize(
    ("claims", "app"),
    [
        ({"sub": "x", "idtyp": "app"}, True),
        ({"sub": "x", "oid": "x", "idtyp": "user"}, False),
        ({"sub": "sp-1", "oid": "sp-1", "azp": "client"}, True),  # Entra app-only, no idtyp
        ({"sub": "pairwise", "oid": "person", "azp": "client"}, False),  # Entra person
        ({"sub": "my-client", "client_id": "my-client"}, True),  # RFC 9068
        ({"sub": "alice", "azp": "my-client"}, False),
        ({"oid": "x"}, False),
    ],
)
def test_an_application_token_is_told_from_a_persons_by_its_claims(
    claims: dict[str, Any], app: bool
) -> None:
    assert is_app_token(claims) is app
