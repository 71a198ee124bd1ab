"""Multi-tenant authorities: a stranger's tenant with a group named ``admins`` gets nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import IdentityError, PolicyError
from jupyter_gov.identity.base import Identity
from jupyter_gov.identity.msal_provider import MsalProvider
from jupyter_gov.identity.oidc import TokenRejected, TokenValidator
from jupyter_gov.identity.tenants import ENTRA_ISSUER
from jupyter_gov.policy import Policy

from .test_identity_msal import sign_in, user_provider

pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")

OURS = "tenant-guid-1"
FOREIGN = "tenant-guid-evil"


def policy_with(identity: dict[str, Any]) -> Policy:
    data = json.loads(json.dumps(Policy.load().data))
    data["identity"] = {"provider": "msal", "client_id": "app", **identity}
    return Policy(data)


# -- policy load -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "identity",
    [
        {"authority": "https://login.microsoftonline.com/common"},
        {"authority": "https://login.microsoftonline.com/organizations/"},
        {"oidc_authority": "https://issuer.example/any", "issuer": ENTRA_ISSUER},
    ],
)
def test_multi_tenant_authority_without_tenants_is_refused_at_policy_load(identity) -> None:
    with pytest.raises(PolicyError, match=r"any tenant; list the tenant ids .*tenants\.$"):
        policy_with(identity)


def test_multi_tenant_authority_with_tenants_loads() -> None:
    policy = policy_with(
        {"authority": "https://login.microsoftonline.com/common", "tenants": [OURS]}
    )
    assert policy.tenants == {OURS}


def test_single_tenant_authority_needs_no_tenant_list() -> None:
    assert policy_with({"authority": "https://login.microsoftonline.com/contoso-id"}).tenants == (
        frozenset()
    )


def test_empty_tenant_list_is_a_schema_error() -> None:
    with pytest.raises(PolicyError):
        policy_with({"authority": "https://login.microsoftonline.com/common", "tenants": []})


def test_msal_provider_refuses_a_multi_tenant_authority_without_tenants(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="accepts sign-ins from any tenant"):
        MsalProvider(
            "app",
            authority="https://login.microsoftonline.com/common",
            token_cache=tmp_path / "c.bin",
        )


def test_multi_tenant_entra_issuer_is_pinned_not_discovered(tmp_path: Path) -> None:
    provider = MsalProvider(
        "app",
        authority="https://login.microsoftonline.com/organizations",
        tenants=[OURS],
        token_cache=tmp_path / "c.bin",
    )
    assert provider.validator.issuers == (ENTRA_ISSUER,)
    assert provider.validator.tenants == {OURS}


# -- the issuer is the listed tenant's own -------------------------------------------------


def validator(tenants: tuple[str, ...] = (OURS,)) -> TokenValidator:
    # issuers given, so _check_issuer never fetches discovery
    return TokenValidator(
        "https://login.microsoftonline.com/common/v2.0", issuer=ENTRA_ISSUER, tenants=tenants
    )


def test_issuer_of_another_tenant_is_refused_even_with_a_listed_tid() -> None:
    claims = {"tid": OURS, "iss": f"https://login.microsoftonline.com/{FOREIGN}/v2.0"}
    with pytest.raises(TokenRejected, match="issued by"):
        validator()._check_issuer(claims)


def test_listed_tenant_with_its_own_issuer_is_accepted() -> None:
    validator()._check_issuer(
        {"tid": OURS, "iss": f"https://login.microsoftonline.com/{OURS}/v2.0"}
    )


def test_templated_issuer_without_tenants_refuses_every_token() -> None:
    claims = {"tid": OURS, "iss": f"https://login.microsoftonline.com/{OURS}/v2.0"}
    with pytest.raises(TokenRejected, match="policy lists none"):
        validator(tenants=())._check_issuer(claims)


def test_identity_from_an_unlisted_tenant_holds_no_role() -> None:
    policy = policy_with(
        {"authority": "https://login.microsoftonline.com/common", "tenants": [OURS]}
    )
    stranger = Identity(
        "oid-x", "X", "msal-auth-code", issuer=FOREIGN, verified=True, groups=("admins",)
    )
    assert policy.roles_for(stranger) == ()
    ours = Identity("oid-y", "Y", "msal-auth-code", issuer=OURS, verified=True, groups=("admins",))
    assert policy.roles_for(ours) == ("admin",)


# -- against the real OIDC provider ------------------------------------------------------


@pytest.mark.server
def test_sign_in_from_an_unlisted_tenant_is_refused_with_one_sentence(
    oidc_server: Any, tmp_path: Path
) -> None:
    provider = user_provider(oidc_server, tmp_path / "c.bin", tenants=[OURS])
    with pytest.raises(TokenRejected) as error:
        sign_in(oidc_server, provider, "mallory")  # tid tenant-guid-evil, groups [admins]
    assert str(error.value) == (
        f"The sign-in token was rejected: it comes from tenant {FOREIGN!r}, which the "
        "policy's identity.tenants does not list."
    )


@pytest.mark.server
def test_sign_in_without_a_tenant_is_refused_when_tenants_are_listed(
    oidc_server: Any, tmp_path: Path
) -> None:
    provider = user_provider(oidc_server, tmp_path / "c.bin", tenants=[OURS])
    with pytest.raises(TokenRejected, match="comes from no tenant"):
        sign_in(oidc_server, provider, "alice")


@pytest.mark.server
def test_sign_in_from_a_listed_tenant_is_accepted(oidc_server: Any, tmp_path: Path) -> None:
    provider = user_provider(oidc_server, tmp_path / "c.bin", tenants=[OURS])
    assert sign_in(oidc_server, provider, "carol").issuer == OURS


def foreign_service(oidc_server: Any, tenants: tuple[str, ...]) -> MsalProvider:
    return MsalProvider(
        "pipeline-foreign",
        oidc_authority=oidc_server.authority("tenant1"),
        ca_bundle=oidc_server.ca_file,
        client_credential="foreign-secret",
        mode="service",
        scope="api://jupyter-gov/query",
        tenants=tenants,
    )


@pytest.mark.server
def test_foreign_tenant_token_with_admins_role_is_denied_and_audited(
    oidc_server: Any, demo_connector: Any
) -> None:
    policy = policy_with({"oidc_authority": oidc_server.authority("tenant1"), "tenants": [OURS]})
    session = GovernedSession(policy, foreign_service(oidc_server, (OURS,)))
    session.use_connector("demo", demo_connector)
    with pytest.raises(IdentityError, match=f"comes from tenant {FOREIGN!r}"):
        session.sql("SELECT email FROM customers LIMIT 1")
    (event,) = session.audit.events(kinds=["decision"])
    assert event["decision"] == "deny" and event["rules"] == ["identity"]
    assert FOREIGN in event["reasons"][0]
    assert session.audit.events(kinds=["result"]) == []


@pytest.mark.server
def test_without_a_tenant_list_the_same_token_would_be_admin(
    oidc_server: Any, demo_connector: Any
) -> None:
    """The control for the test above: the attack is real on a policy without tenants."""
    policy = policy_with({"oidc_authority": oidc_server.authority("tenant1")})
    session = GovernedSession(policy, foreign_service(oidc_server, ()))
    session.use_connector("demo", demo_connector)
    assert session.sql("SELECT email FROM customers LIMIT 1").masked_columns == {}
