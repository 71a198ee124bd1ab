"""The pgwire door over TLS, and a sign-in that expires during a session.

An in-process server (a thread running its event loop) with a ``trustme`` certificate;
its authenticator is the real one, wrapped so that one token stands for a sign-in whose
validity has already ended by the time the first statement arrives.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trustme

from jupyter_gov.gateway.pgwire import PgWireServer, TokenAuthenticator, tls_context
from jupyter_gov.identity import Identity
from jupyter_gov.policy import Policy
from tests.pgwire.conftest import TOKENS, gateway_policy, in_process

EXPIRED = "token-of-a-sign-in-that-has-since-expired"


class ExpiringAuthenticator(TokenAuthenticator):
    """The real authenticator, plus one token whose sign-in is already over."""

    def authenticate(self, token: str) -> Identity:
        if token == EXPIRED:
            return Identity(
                subject="carol",
                display_name="Carol",
                auth_method="msal",
                issuer="https://issuer.example",
                verified=True,
                groups=("analysts",),
                expires_at=time.time() - 1,
            )
        return super().authenticate(token)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgWireServer, str]]:
    home = tmp_path_factory.mktemp("pgwire-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(home / "cert.pem"))
    cert.private_key_pem.write_to_path(str(home / "key.pem"))
    ca.cert_pem.write_to_path(str(home / "ca.pem"))
    policy = Policy.load(gateway_policy(home / "policy.yaml"))
    server = PgWireServer(
        policy,
        audit=f"sqlite:///{home / 'audit.sqlite'}",
        tls=tls_context(str(home / "cert.pem"), str(home / "key.pem")),
        authenticator=ExpiringAuthenticator(policy),
    )
    with in_process(server):
        yield server, str(home / "ca.pem")


def dsn(server: PgWireServer, token: str, sslmode: str, ca: str) -> str:
    return (
        f"host=127.0.0.1 port={server.port} user=x dbname=governed password={token} "
        f"sslmode={sslmode} sslrootcert={ca} connect_timeout=10"
    )


def test_a_client_verifying_the_gateways_certificate_connects_over_tls(tls_server):
    server, ca = tls_server
    with psycopg.connect(dsn(server, TOKENS["etl"], "verify-full", ca)) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1 AS one").fetchone() == (1,)


def test_a_client_without_tls_is_refused_before_it_sends_its_token(tls_server):
    server, ca = tls_server
    with pytest.raises(psycopg.OperationalError, match="requires TLS"):
        psycopg.connect(dsn(server, TOKENS["etl"], "disable", ca))


def test_a_sign_in_that_expired_is_refused_at_the_next_statement_and_the_session_ends(
    tls_server,
):
    server, ca = tls_server
    with psycopg.connect(dsn(server, EXPIRED, "require", ca), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="expired"):
            conn.execute("SELECT 1 AS one")
        with pytest.raises(psycopg.OperationalError):  # the gateway ended the session
            conn.execute("SELECT 1 AS one")
    event = server.audit.events(kinds=["decision"], limit=1)[0]
    assert (event["decision"], event["rules"]) == ("deny", ["identity"])


def test_the_cli_refuses_half_a_tls_configuration(tmp_path: Path):
    from jupyter_gov.errors import UsageError

    with pytest.raises(UsageError, match="both --tls-cert and --tls-key"):
        tls_context(str(tmp_path / "cert.pem"), None)
