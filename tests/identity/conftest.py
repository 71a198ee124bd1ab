"""A real OIDC provider over TLS on 127.0.0.1 for the identity tests.

The real JupyterHub of the Hub identity tests is ``tests/hub_server.py`` (registered in
``tests/conftest.py``).

``oidc-provider-mock`` (a Flask app built on authlib) is mounted twice, under ``/tenant1`` and
``/tenant2`` (each with its own signing key), behind a ``trustme`` CA that
``REQUESTS_CA_BUNDLE`` points at. Three gaps of the mock are filled on the server side:

* its refresh grant accepts only ``client_secret_basic`` while msal sends
  ``client_secret_post`` (or nothing, for public clients): RFC 6749 lets a server accept
  both and Entra, Keycloak and Okta do, so the grant is configured to; and it does not know
  the ``offline_access`` scope that msal always requests, so that scope is allowed;
* it has no client-credentials grant: ``/oauth2/token`` answers ``client_credentials`` with
  a JWT access token signed by the tenant's own key, for registered clients (secret or
  certificate assertion);
* it has no device-code grant: ``/oauth2/devicecode`` plus the device grant, approved by
  the test through ``/test/device/approve``.
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPES = "openid profile offline_access"
USERS: dict[str, dict[str, Any]] = {
    "alice": {"name": "Alice Analyst", "groups": ["analysts"], "region": "emea"},
    "bob": {"name": "Bob Admin", "groups": ["admins"], "region": "amer"},
    "carol": {
        "preferred_username": "alice",
        "oid": "oid-carol",
        "tid": "tenant-guid-1",
        "roles": ["auditor"],
    },
    # a stranger's tenant, with a group named like ours: only the tenant allow-list stops her
    "mallory": {"name": "Mallory", "tid": "tenant-guid-evil", "groups": ["admins"]},
}


@dataclass
class OidcServer:
    """Handle on the running provider: URLs, request counts and test-only controls."""

    base: str
    ca_file: str
    hits: collections.Counter[str] = field(default_factory=collections.Counter)
    client_cert_pem: str = ""

    def authority(self, tenant: str = "tenant1") -> str:
        return f"{self.base}/{tenant}"

    @property
    def issuer(self) -> str:  # the mock names its host, not its mount path, as issuer
        return self.base

    def count(self, tenant: str, path: str) -> int:
        return self.hits[f"/{tenant}{path}"]

    def authorize(self, auth_uri: str, sub: str) -> str:
        """Do what a person does on the mock's authorize page; return the redirect URL."""
        import requests

        response = requests.post(auth_uri, data={"sub": sub}, allow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text[:300]
        return response.headers["Location"]

    def approve_device(self, tenant: str, user_code: str, sub: str) -> None:
        import requests

        response = requests.post(
            f"{self.authority(tenant)}/test/device/approve",
            json={"user_code": user_code, "sub": sub},
            timeout=10,
        )
        assert response.status_code == 204, response.text

    def revoke(self, tenant: str, sub: str) -> None:
        import requests

        response = requests.post(f"{self.authority(tenant)}/users/{sub}/revoke-tokens", timeout=10)
        assert response.status_code == 204


def _extend(app: Any, clients: dict[str, dict[str, Any]]) -> None:
    """Add the client-credentials and device-code grants to one mock tenant."""
    import flask
    import jwt
    from oidc_provider_mock._storage import AccessToken, RefreshToken, storage

    devices: dict[str, dict[str, Any]] = {}

    def issuer() -> str:
        return flask.request.host_url.rstrip("/")

    def sign(claims: dict[str, Any]) -> str:
        key = storage.jwk
        return jwt.encode(
            claims,
            key.as_pem(is_private=True),
            algorithm="RS256",
            headers={"kid": key.as_dict()["kid"]},
        )

    def oauth_error(error: str, status: int = 400) -> flask.Response:
        response = flask.jsonify({"error": error, "error_description": error.replace("_", " ")})
        response.status_code = status
        return response

    def client_credentials() -> flask.Response:
        form = flask.request.form
        client = clients.get(form.get("client_id", ""))
        if client is None:
            return oauth_error("invalid_client", 401)
        if form.get("client_secret"):
            ok = secrets.compare_digest(form["client_secret"], client.get("secret", ""))
        elif form.get("client_assertion") and client.get("cert"):
            from cryptography import x509

            public = x509.load_pem_x509_certificate(client["cert"].encode()).public_key()
            try:
                jwt.decode(
                    form["client_assertion"],
                    public,
                    algorithms=["RS256", "PS256"],
                    audience=flask.request.base_url,
                    issuer=form["client_id"],
                )
                ok = True
            except jwt.PyJWTError:
                ok = False
        else:
            ok = False
        if not ok:
            return oauth_error("invalid_client", 401)
        now = int(time.time())
        resource = form.get("scope", "").split()[0].rsplit("/", 1)[0]
        token = sign(
            {
                "iss": issuer(),
                "aud": resource,
                "sub": client["oid"],
                "oid": client["oid"],
                "azp": form["client_id"],
                "roles": client.get("roles", []),
                **({"tid": client["tid"]} if "tid" in client else {}),
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
            }
        )
        return flask.jsonify({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def device_token() -> flask.Response:
        entry = devices.get(flask.request.form.get("device_code", ""))
        if entry is None:
            return oauth_error("expired_token")
        if entry["sub"] is None:
            return oauth_error("authorization_pending")
        del devices[flask.request.form["device_code"]]
        sub, client_id, now = entry["sub"], entry["client_id"], int(time.time())
        user = storage.get_user(sub)
        id_token = sign(
            {
                **(user.claims if user else {}),
                "iss": issuer(),
                "aud": client_id,
                "sub": sub,
                "iat": now,
                "exp": now + 3600,
            }
        )
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        expires = datetime.now(timezone.utc) + timedelta(hours=1)
        storage.store_access_token(
            AccessToken(token=access, user_id=sub, scope=SCOPES, expires_at=expires)
        )
        storage.store_refresh_token(
            RefreshToken(
                token=refresh,
                access_token=access,
                user_id=sub,
                scope=SCOPES,
                expires_at=expires,
                client_id=client_id,
            )
        )
        return flask.jsonify(
            {
                "access_token": access,
                "refresh_token": refresh,
                "id_token": id_token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": SCOPES,
            }
        )

    @app.before_request
    def extra_endpoints() -> Any:
        request = flask.request
        if request.method != "POST":
            return None
        if request.path == "/oauth2/token":
            grant = request.form.get("grant_type")
            if grant == "client_credentials":
                return client_credentials()
            if grant == DEVICE_GRANT:
                return device_token()
            return None
        if request.path == "/oauth2/devicecode":
            code, user_code = secrets.token_urlsafe(24), secrets.token_hex(4).upper()
            devices[code] = {
                "user_code": user_code,
                "sub": None,
                "client_id": request.form.get("client_id", ""),
            }
            uri = request.host_url + request.script_root.strip("/") + "/device"
            return flask.jsonify(
                {
                    "device_code": code,
                    "user_code": user_code,
                    "verification_uri": uri,
                    "expires_in": 600,
                    "interval": 5,
                    "message": f"To sign in, open {uri} and enter the code {user_code}.",
                }
            )
        if request.path == "/test/device/approve":
            body = request.get_json()
            for entry in devices.values():
                if entry["user_code"] == body["user_code"]:
                    entry["sub"] = body["sub"]
                    return "", 204
            return "", 404
        return None

    @app.after_request
    def advertise(response: flask.Response) -> flask.Response:
        if flask.request.path == "/.well-known/openid-configuration":
            document = json.loads(response.get_data())
            root = flask.request.host_url + flask.request.script_root.strip("/")
            document["device_authorization_endpoint"] = root + "/oauth2/devicecode"
            document["grant_types_supported"] += ["client_credentials", DEVICE_GRANT]
            response.set_data(json.dumps(document))
        return response


def _start_oidc_server(tmp: str) -> tuple[OidcServer, Any]:
    with warnings.catch_warnings(record=True):  # authlib's deprecation notices on import
        import oidc_provider_mock
        import oidc_provider_mock._app as mock_app
        import oidc_provider_mock._storage as mock_storage
    import trustme
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.serving import WSGIRequestHandler, make_server
    from werkzeug.wrappers import Response

    mock_app.RefreshTokenGrant.TOKEN_ENDPOINT_AUTH_METHODS = [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ]
    if "offline_access" not in mock_storage.Client.SCOPES_SUPPORTED:  # msal asks for it
        mock_storage.Client.SCOPES_SUPPORTED = (
            *mock_storage.Client.SCOPES_SUPPORTED,
            "offline_access",
        )

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    # The test CA *added to* the trusted roots already in use, so that pointing
    # REQUESTS_CA_BUNDLE at it for the session does not break anything else that verifies
    # public hosts (pip in a subprocess, for one).
    ca_file = os.path.join(tmp, "test-ca.pem")
    existing = os.environ.get("REQUESTS_CA_BUNDLE") or _default_bundle()
    with open(ca_file, "wb") as bundle:
        if existing and os.path.exists(existing):
            with open(existing, "rb") as roots:
                bundle.write(roots.read().rstrip() + b"\n")
        bundle.write(ca.cert_pem.bytes())
    client_cert = ca.issue_cert("pipeline-cert.example", key_type=trustme.KeyType.RSA)
    client_pem = (
        client_cert.private_key_pem.bytes().decode()
        + client_cert.cert_chain_pems[0].bytes().decode()
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)

    clients = {
        "pipeline": {"secret": "pipeline-secret", "oid": "sp-pipeline", "roles": ["pipeline.run"]},
        "pipeline-foreign": {
            "secret": "foreign-secret",
            "oid": "sp-foreign",
            "tid": "tenant-guid-evil",
            "roles": ["admins"],
        },
        "pipeline-cert": {
            "cert": client_cert.cert_chain_pems[0].bytes().decode(),
            "oid": "sp-pipeline-cert",
            "roles": ["pipeline.run"],
        },
    }
    users = [oidc_provider_mock.User(sub=sub, claims=claims) for sub, claims in USERS.items()]
    tenants = {}
    for name in ("tenant1", "tenant2"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            app = oidc_provider_mock.app(user_claims=users)
        _extend(app, clients)
        tenants[f"/{name}"] = app
    hits: collections.Counter[str] = collections.Counter()
    dispatcher = DispatcherMiddleware(Response("not found", status=404), tenants)

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        hits[environ.get("PATH_INFO", "")] += 1
        return dispatcher(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log(self, *args: Any) -> None:
            return

    server = make_server(
        "127.0.0.1", 0, counting, threaded=True, ssl_context=context, request_handler=Quiet
    )
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    ).start()
    handle = OidcServer(
        base=f"https://127.0.0.1:{server.server_port}",
        ca_file=ca_file,
        hits=hits,
        client_cert_pem=client_pem,
    )
    return handle, server


@pytest.fixture(scope="session")
def oidc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcServer]:
    """The TLS OIDC provider; skipped (failed when CI=true) if it cannot start."""
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    server = None
    try:
        handle, server = _start_oidc_server(str(tmp_path_factory.mktemp("oidc")))
        os.environ["REQUESTS_CA_BUNDLE"] = handle.ca_file
        import requests

        requests.get(
            handle.authority() + "/.well-known/openid-configuration", timeout=10
        ).raise_for_status()
    except Exception as error:  # missing package, no loopback, TLS trouble, ...
        if server is not None:
            server.shutdown()
            server.server_close()
        _restore("REQUESTS_CA_BUNDLE", previous)
        reason = f"the test OIDC provider could not start: {type(error).__name__}: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield handle
    finally:
        server.shutdown()
        server.server_close()
        _restore("REQUESTS_CA_BUNDLE", previous)


def _default_bundle() -> str | None:
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


class Clock:
    """A wall clock that tests move forward instead of sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()
