"""The validated policy as objects: roles, connections, classifications, masks, filters, rules.

The policy answers questions (which roles does this identity hold? which mask applies to
this column for these roles?) and never touches SQL text: that is ``analysis`` and
``masking``'s job.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from jupyter_gov.errors import ConnectionFailed, PolicyError, UnknownConnection
from jupyter_gov.identity.base import AGENT_AUTH, PRINCIPAL_ISSUER, SERVICE_AUTH, Identity
from jupyter_gov.identity.tenants import config_is_multi_tenant
from jupyter_gov.policy import loader

#: Mask functions from least to most restrictive; where several apply, the last wins.
MASK_ORDER = (
    "none",
    "email",
    "partial",
    "year",
    "scrub",
    "mask",
    "token",
    "hash",
    "replace",
    "redact",
    "null",
    "deny",
)


@dataclass(frozen=True)
class MaskSpec:
    """One mask function with its options, e.g. ``partial`` keeping the last 4 characters."""

    function: str
    keep_first: int = 0
    keep_last: int = 0
    value: str | None = None
    entities: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: str | Mapping[str, Any]) -> MaskSpec:
        if isinstance(raw, str):
            return cls(raw)
        return cls(
            function=raw["function"],
            keep_first=int(raw.get("keep_first", 0)),
            keep_last=int(raw.get("keep_last", 0)),
            value=raw.get("value"),
            entities=tuple(raw.get("entities", ())),
        )

    @property
    def rank(self) -> int:
        return MASK_ORDER.index(self.function)

    @property
    def label(self) -> str:
        """Short human name, as the decision banner shows it."""
        if self.function == "partial":
            kept = [f"first {self.keep_first}"] if self.keep_first else []
            kept += [f"last {self.keep_last}"] if self.keep_last else []
            return f"partial ({', '.join(kept) or 'nothing'} kept)"
        return self.function


NO_MASK = MaskSpec("none")


@dataclass(frozen=True)
class Role:
    name: str
    groups: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    claims: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    access: str = "read_only"
    connections: tuple[str, ...] = ()
    approve: bool = False
    unmask_with_approval: tuple[str, ...] = ()
    description: str = ""
    timeout_seconds: float | None = None
    max_rows: int | None = None

    def matches(self, identity: Identity) -> bool:
        if identity.subject in self.users or set(identity.groups) & set(self.groups):
            return True
        return any(
            _claim_matches(identity.attributes.get(claim), allowed)
            for claim, allowed in self.claims.items()
        )

    @property
    def can_write(self) -> bool:
        return self.access == "read_write"


def _claim_matches(value: Any, allowed: Iterable[Any]) -> bool:
    values = value if isinstance(value, (list, tuple, set)) else [value]
    return any(v in allowed for v in values if v is not None)


@dataclass(frozen=True)
class Connection:
    name: str
    url: str
    dialect: str | None = None
    environment: str = "development"
    description: str = ""
    default: bool = False
    read_only: bool = False
    timeout_seconds: float | None = None
    max_rows: int | None = None

    @property
    def expanded_url(self) -> str:
        """The URL with ``${VAR}`` expanded, so secrets stay in the environment.

        The expanded form goes to the driver only: messages show :attr:`url`, the policy's
        own form. A variable that is not set is an error naming the variable, never a URL
        sent on with ``${VAR}`` left in it.
        """
        missing = [name for name in env_references(self.url) if name not in os.environ]
        if missing:
            raise ConnectionFailed(
                f"Connection {self.name!r} uses ${{{missing[0]}}}, which is not set; set it in "
                "the environment of the kernel (or the CLI) and try again."
            )
        return os.path.expandvars(self.url)


#: The kernel's scratch DuckDB: every result saved with ``NAME <<``, from any connection, is
#: registered there (already masked), so a later governed cell can join a PostgreSQL result
#: with a MariaDB one. Each identity sees only its own saved results; nothing is written there.
SCRATCH = Connection(
    name="scratch",
    url="duckdb:memory",
    environment="session",
    description="Results saved with NAME << from every connection (yours only).",
    read_only=True,
)


_ENV_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def env_references(url: str) -> list[str]:
    """The variables ``os.path.expandvars`` would expand in ``url``, in order."""
    return list(dict.fromkeys(a or b for a, b in _ENV_REFERENCE.findall(url)))


@dataclass(frozen=True)
class Limits:
    """What the server enforces on one statement: its run time and (reads) its rows."""

    timeout_seconds: float | None = None
    max_rows: int | None = None


@dataclass(frozen=True)
class RowFilter:
    id: str
    table: str
    where: str
    roles: tuple[str, ...] = ()
    when: str | None = None  # "user.region": apply only to identities with that attribute

    def applies(self, roles: Iterable[str], identity: Identity) -> bool:
        if self.roles and not set(self.roles) & set(roles):
            return False
        if self.when:
            return identity.attributes.get(self.when.split(".", 1)[1]) is not None
        return True


@dataclass(frozen=True)
class ApprovalRule:
    id: str
    approvers: tuple[str, ...]
    description: str = ""
    statements: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    connections: tuple[str, ...] = ()
    unmasked_tags: tuple[str, ...] = ()
    max_rows: int | None = None


@dataclass(frozen=True)
class Service:
    """A pipeline's identity: roles of its own, proven by a token whose hash the policy holds."""

    name: str
    roles: tuple[str, ...]
    token_sha256: str
    description: str = ""


@dataclass(frozen=True)
class Agent:
    """An AI agent served over MCP: its own roles and tighter limits than any person."""

    name: str
    roles: tuple[str, ...]
    max_rows: int = 200
    queries_per_minute: int = 30
    deny_statements: tuple[str, ...] = ()
    token_sha256: str | None = None
    description: str = ""


class Policy:
    """A validated policy. Build one with :meth:`load` or :meth:`from_text`."""

    def __init__(self, data: Mapping[str, Any], origin: str = "<policy>") -> None:
        self.data = dict(data)
        self.origin = origin
        self.name: str = data["name"]
        self.version: int = data["version"]
        self.hash = loader.content_hash(data)
        self.identity_config: dict[str, Any] = dict(data.get("identity") or {"provider": "local"})
        self.tenants: frozenset[str] = frozenset(self.identity_config.get("tenants") or ())
        # How `jupyter-gov gateway serve` checks callers' tokens (see jupyter_gov.gateway.auth).
        self.gateway_config: dict[str, Any] = dict(data.get("gateway") or {})
        self.roles: dict[str, Role] = {
            name: Role(
                name=name,
                groups=tuple(spec.get("groups", ())),
                users=tuple(spec.get("users", ())),
                claims={k: tuple(v) for k, v in spec.get("claims", {}).items()},
                access=spec.get("access", "read_only"),
                # A role kept to some connections still reads its own saved results.
                connections=tuple(spec.get("connections", ()))
                + ((SCRATCH.name,) if spec.get("connections") else ()),
                approve=bool(spec.get("approve", False)),
                unmask_with_approval=tuple(spec.get("unmask_with_approval", ())),
                description=spec.get("description", ""),
                timeout_seconds=spec.get("timeout_seconds"),
                max_rows=spec.get("max_rows"),
            )
            for name, spec in data["roles"].items()
        }
        self.connections: dict[str, Connection] = {
            name: Connection(
                name=name,
                url=spec["url"],
                dialect=spec.get("dialect"),
                environment=spec.get("environment", "development"),
                description=spec.get("description", ""),
                default=bool(spec.get("default", False)),
                read_only=bool(spec.get("read_only", False)),
                timeout_seconds=spec.get("timeout_seconds"),
                max_rows=spec.get("max_rows"),
            )
            for name, spec in data["connections"].items()
        }
        self.classifications: dict[str, tuple[str, ...]] = {
            tag: tuple(p.lower() for p in patterns)
            for tag, patterns in (data.get("classifications") or {}).items()
        }
        self.masks: dict[str, dict[str, MaskSpec]] = {
            tag: {role: MaskSpec.parse(raw) for role, raw in per_role.items()}
            for tag, per_role in (data.get("masks") or {}).items()
        }
        raw_unclassified = data.get("unclassified", "allow")
        #: ``unclassified: auto``: columns nobody classified are profiled (jupyter_gov.pii)
        #: and those found to hold PII get the mask of the tag they were found to be.
        self.auto_classify: bool = raw_unclassified == "auto"
        pii = data.get("pii") or {}
        self.scan_results: bool = bool(data.get("scan_results", False))
        self.pii_sample_rows: int = int(pii.get("sample_rows", 500))
        self.pii_max_tables: int = int(pii.get("max_tables", 500))
        self.pii_raw_roles: tuple[str, ...] = tuple(pii.get("raw_roles", ()))
        self.detokenize_roles: tuple[str, ...] = tuple(pii.get("detokenize_roles", ()))
        raw_operator = pii.get("operator", "replace")
        #: role (or ``default``) -> operator ``scan_results`` replaces findings with.
        self.pii_operators: dict[str, str] = (
            dict(raw_operator) if isinstance(raw_operator, Mapping) else {"default": raw_operator}
        )
        #: (table, column) -> finding, on a policy derived by ``unclassified: auto``.
        self.pii_findings: dict[tuple[str, str], Any] = {}
        self.unclassified: MaskSpec = (
            NO_MASK
            if raw_unclassified in ("allow", "auto")
            else MaskSpec("deny")
            if raw_unclassified == "deny"
            else MaskSpec.parse(raw_unclassified)
        )
        self.row_filters: tuple[RowFilter, ...] = tuple(
            RowFilter(
                id=spec["id"],
                table=spec["table"].lower(),
                where=spec["where"],
                roles=tuple(spec.get("roles", ())),
                when=spec.get("when"),
            )
            for spec in data.get("row_filters") or ()
        )
        approvals = data.get("approvals") or {}
        self.approval_ttl: int = int(approvals.get("ttl_seconds", 3600))
        self.approval_max_uses: int = int(approvals.get("max_uses", 1))
        self.break_glass_roles: tuple[str, ...] = tuple(
            (approvals.get("break_glass") or {}).get("roles", ())
        )
        #: Channels told about approval requests and decisions (jupyter_gov.notify).
        self.approval_notify: tuple[dict[str, Any], ...] = tuple(
            dict(c) for c in approvals.get("notify") or ()
        )
        self.approval_link: str | None = approvals.get("link")
        self.approval_rules: tuple[ApprovalRule, ...] = tuple(
            ApprovalRule(
                id=spec["id"],
                approvers=tuple(spec["approvers"]),
                description=spec.get("description", ""),
                statements=tuple(spec.get("statements", ())),
                roles=tuple(spec.get("roles", ())),
                environments=tuple(spec.get("environments", ())),
                connections=tuple(spec.get("connections", ())),
                unmasked_tags=tuple(spec.get("unmasked_tags", ())),
                max_rows=spec.get("max_rows"),
            )
            for spec in approvals.get("rules", ())
        )
        guardrails = data.get("guardrails") or {}
        self.allow_functions = frozenset(f.lower() for f in guardrails.get("allow_functions", ()))
        self.deny_functions = frozenset(f.lower() for f in guardrails.get("deny_functions", ()))
        self.allow_table_functions = frozenset(
            f.lower() for f in guardrails.get("allow_table_functions", ())
        )
        self.max_statements: int = int(guardrails.get("max_statements", 20))
        #: Planning cost grows with a cell's size and depth; both are capped before parsing.
        self.max_sql_bytes: int = int(guardrails.get("max_sql_bytes", 1024 * 1024))
        self.max_nesting: int = int(guardrails.get("max_nesting", 60))
        audit = data.get("audit") or {}
        self.audit_store: str | None = audit.get("store")
        #: Where committed audit events are exported (jupyter_gov.audit.sinks).
        self.audit_sinks: tuple[dict[str, Any], ...] = tuple(
            dict(s) for s in audit.get("sinks") or ()
        )
        self.audit_sink_queue: int = int(audit.get("sink_queue", 1000))
        masking_conf = data.get("masking") or {}
        self.mask_key_env: str = masking_conf.get("key_env", "JUPYTER_GOV_MASK_KEY")
        #: Masks a column only carries to the output are computed after joins, filters and
        #: aggregates (see plan.late_columns); False keeps every mask in the scan.
        self.late_masking: bool = bool(masking_conf.get("late", True))
        #: The keyed digest of ``hash`` and ``token`` masks: ``sha256`` (the default, whose
        #: pseudonyms are stable across versions) or ``md5`` (about 3x cheaper per row).
        self.mask_digest: str = str(masking_conf.get("digest", "sha256"))
        self.services: dict[str, Service] = {
            name: Service(
                name=name,
                roles=tuple(spec["roles"]),
                token_sha256=spec["token_sha256"],
                description=spec.get("description", ""),
            )
            for name, spec in (data.get("services") or {}).items()
        }
        self.agents: dict[str, Agent] = {
            name: Agent(
                name=name,
                roles=tuple(spec["roles"]),
                max_rows=int(spec.get("max_rows", 200)),
                queries_per_minute=int(spec.get("queries_per_minute", 30)),
                deny_statements=tuple(s.lower() for s in spec.get("deny_statements", ())),
                token_sha256=spec.get("token_sha256"),
                description=spec.get("description", ""),
            )
            for name, spec in (data.get("agents") or {}).items()
        }
        self._check_references()

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str, origin: str = "<policy>") -> Policy:
        return cls(loader.parse_policy(text, origin), origin)

    @classmethod
    def load(cls, source: str | Path | None = None) -> Policy:
        """Load a policy file, ``"demo"`` or ``None`` for the built-in demo policy.

        ``$JUPYTER_GOV_POLICY`` is used when no source is given.
        """
        if source is None:
            source = os.environ.get("JUPYTER_GOV_POLICY") or None
        text, origin = loader.read_policy_source(source)
        return cls.from_text(text, origin)

    def _check_references(self) -> None:
        """Cross-references the schema cannot express: roles named in masks, filters, rules."""
        known = set(self.roles)

        def check(names: Iterable[str], where: str, extra: Iterable[str] = ()) -> None:
            unknown = set(names) - known - set(extra)
            if unknown:
                raise PolicyError(
                    f"{self.origin}: {where} names unknown role(s) {sorted(unknown)}; "
                    f"known roles are {sorted(known)}."
                )

        for tag, per_role in self.masks.items():
            check(per_role, f"masks.{tag}", extra=["default"])
        for rf in self.row_filters:
            check(rf.roles, f"row_filters {rf.id}")
        for rule in self.approval_rules:
            check(rule.roles, f"approvals rule {rule.id}")
            check(rule.approvers, f"approvals rule {rule.id} approvers")
        check(self.break_glass_roles, "approvals.break_glass")
        check(self.pii_raw_roles, "pii.raw_roles")
        check(self.detokenize_roles, "pii.detokenize_roles")
        check(self.pii_operators, "pii.operator", extra=["default"])
        for service in self.services.values():
            check(service.roles, f"services.{service.name}")
        for agent in self.agents.values():
            check(agent.roles, f"agents.{agent.name}")
        if (
            self.identity_config.get("provider") == "msal"
            and config_is_multi_tenant(self.identity_config)
            and not self.tenants
        ):
            raise PolicyError(
                f"{self.origin}: identity's authority accepts sign-ins from any tenant; list "
                "the tenant ids you trust in identity.tenants."
            )
        if SCRATCH.name in self.connections:
            raise PolicyError(
                f"{self.origin}: the connection name {SCRATCH.name!r} is reserved for the "
                "kernel's saved results; rename that connection."
            )
        defaults = [c.name for c in self.connections.values() if c.default]
        if len(defaults) > 1:
            raise PolicyError(f"{self.origin}: several connections are marked default: {defaults}.")

    # -- questions -----------------------------------------------------------------------

    def roles_for(self, identity: Identity) -> tuple[str, ...]:
        """The roles an identity holds. Services and agents hold exactly the roles their
        policy entry lists (never a group's); an agent acting for a user holds its own roles
        and the user's together, so the strictest mask and every row filter of either
        apply; it holds none if either side holds none (see jupyter_gov.agents for the
        rest of the intersection)."""
        if identity.auth_method == SERVICE_AUTH:
            service = self.services.get(identity.subject)
            return service.roles if service and identity.issuer == PRINCIPAL_ISSUER else ()
        if identity.auth_method == AGENT_AUTH:
            agent = self.agents.get(identity.subject)
            if agent is None or identity.issuer != PRINCIPAL_ISSUER:
                return ()
            if identity.on_behalf_of is None:
                return agent.roles
            user_roles = self.roles_for(identity.on_behalf_of)
            if not user_roles:
                return ()
            return tuple(dict.fromkeys([*agent.roles, *user_roles]))
        if (
            self.tenants
            and identity.auth_method.startswith("msal")
            and identity.issuer not in self.tenants
        ):
            return ()  # a token from another tenant holds no role here, whatever it claims
        return tuple(name for name, role in self.roles.items() if role.matches(identity))

    @property
    def short_hash(self) -> str:
        """The first 12 hex digits of :attr:`hash`: what people read and the audit records
        as ``policy_version`` (``version`` is the schema's own version number)."""
        return self.hash[:12]

    @property
    def default_connection(self) -> str:
        for connection in self.connections.values():
            if connection.default:
                return connection.name
        return next(iter(self.connections))

    def connection(self, name: str | None) -> Connection:
        name = name or self.default_connection
        if name == SCRATCH.name:
            return SCRATCH
        try:
            return self.connections[name]
        except KeyError:
            raise UnknownConnection(
                f"There is no connection named {name!r} in policy {self.name!r}; "
                f"choose one of {sorted(self.connections)}."
            ) from None

    def limits_for(self, roles: Iterable[str], connection: Connection) -> Limits:
        """The statement timeout and row cap for these roles on this connection.

        The smallest value set on the connection or on any of the roles wins, as the most
        restrictive mask does: a role cannot lift a connection's cap, nor another role's.
        """
        sources = [connection, *(self.roles[r] for r in roles if r in self.roles)]
        timeouts = [s.timeout_seconds for s in sources if s.timeout_seconds is not None]
        caps = [s.max_rows for s in sources if s.max_rows is not None]
        return Limits(min(timeouts, default=None), min(caps, default=None))

    def tags_for(self, table: str, column: str, schema: str | None = None) -> tuple[str, ...]:
        """Tags whose patterns match ``[schema.]table.column`` (case-insensitive).

        Memoized: every plan asks for every column of every table it reads, and the
        classification never changes for a loaded policy.
        """
        memo = self.__dict__.setdefault("_tags_memo", {})
        key = (table, column, schema)
        if key not in memo:
            memo[key] = self._tags_for(table, column, schema)
        return memo[key]

    def _tags_for(self, table: str, column: str, schema: str | None) -> tuple[str, ...]:
        short = f"{table}.{column}".lower()
        full = f"{schema}.{table}.{column}".lower() if schema else None
        return tuple(
            tag
            for tag, patterns in self.classifications.items()
            if any(
                fnmatch.fnmatchcase(full if p.count(".") == 2 and full else short, p)
                for p in patterns
                if p.count(".") == 1 or full
            )
        )

    def mask_for_tag(self, tag: str, roles: Iterable[str]) -> MaskSpec:
        """The most restrictive of the masks the given roles get for a tag."""
        per_role = self.masks.get(tag)
        if per_role is None:
            return MaskSpec("redact")  # a classified tag with no rule is never shown raw
        candidates = [
            per_role.get(role, per_role.get("default", MaskSpec("redact"))) for role in roles
        ]
        return max(
            candidates or [per_role.get("default", MaskSpec("redact"))], key=lambda m: m.rank
        )

    def column_mask(
        self, table: str, column: str, roles: Iterable[str], schema: str | None = None
    ) -> tuple[MaskSpec, tuple[str, ...]]:
        """The mask for one column for these roles, and the tags that caused it."""
        roles = tuple(roles)
        tags = self.tags_for(table, column, schema)
        if not tags:
            return self.unclassified, ()
        return max((self.mask_for_tag(tag, roles) for tag in tags), key=lambda m: m.rank), tags

    def pii_operator_for(self, roles: Iterable[str]) -> str:
        """The most restrictive ``pii.operator`` of these roles (replace, hash, mask, encrypt).

        The order is ``MASK_ORDER``'s for the same operators as SQL masks, so a caller with
        several roles gets the same choice on the result scan as in the database.
        """
        order = ("replace", "hash", "mask", "encrypt")
        default = self.pii_operators.get("default", "replace")
        chosen = [self.pii_operators.get(role, default) for role in roles] or [default]
        return min(chosen, key=order.index)

    def with_auto_findings(
        self, findings: Iterable[Any], unprofiled: Iterable[tuple[str | None, str, str]] = ()
    ) -> Policy:
        """This policy with auto findings pinned as classifications (``unclassified: auto``).

        Each finding becomes a ``schema.table.column`` pattern under its tag; a column that
        could not be profiled gets the tag ``unprofiled``, which is redacted (fail closed).
        Tags without a mask rule in the policy get each role's ``pii.operator`` as a SQL
        mask (``replace`` by default). Both are shown raw to ``pii.raw_roles``. The hash
        stays the policy file's: findings are a function of the catalog version, which
        plans are cached by as well.
        """
        import glob

        findings = list(findings)
        data = dict(self.data)
        classifications = {t: list(p) for t, p in (data.get("classifications") or {}).items()}
        masks = {t: dict(r) for t, r in (data.get("masks") or {}).items()}

        def pin(tag: str, schema: str | None, table: str, column: str) -> None:
            name = ".".join(glob.escape(p) for p in (schema, table, column) if p)
            classifications.setdefault(tag, []).append(name)
            if tag not in masks:
                masks[tag] = {**operators, **dict.fromkeys(self.pii_raw_roles, "none")}

        # A found tag the policy has no mask rule for gets each role's ``pii.operator``,
        # rendered in SQL: replace -> its label, mask -> stars, hash -> the keyed hash.
        # No engine can encrypt soundly in SQL, so ``encrypt`` is the label here (its
        # tokens come from scan_results, on text the policy let through; docs/pii.md).
        # ``unprofiled`` columns are redacted whatever the operator: nothing is known.
        in_sql = {"replace": "replace", "mask": "mask", "hash": "hash", "encrypt": "replace"}
        operators = {role: in_sql[op] for role, op in self.pii_operators.items()}
        operators.setdefault("default", "replace")

        for finding in findings:
            pin(finding.tag, finding.schema, finding.table, finding.column)
        for schema, table, column in unprofiled:
            pin("unprofiled", schema, table, column)
        if "unprofiled" not in (data.get("masks") or {}) and "unprofiled" in masks:
            masks["unprofiled"] = {"default": "redact", **dict.fromkeys(self.pii_raw_roles, "none")}
        from jupyter_gov.scrub import FULL_SCRUB

        for role, raw in list(masks.get("free_text", {}).items()):
            if raw == "scrub" or (isinstance(raw, Mapping) and raw == {"function": "scrub"}):
                masks["free_text"][role] = {"function": "scrub", "entities": list(FULL_SCRUB)}
        data["classifications"] = classifications
        data["masks"] = masks
        derived = Policy(data, self.origin)
        derived.hash = self.hash
        derived.pii_findings = {(f.table.lower(), f.column.lower()): f for f in findings}
        return derived

    def row_filters_for(
        self, table: str, roles: Iterable[str], identity: Identity
    ) -> list[RowFilter]:
        roles = tuple(roles)
        table = table.lower()
        return [
            rf
            for rf in self.row_filters
            if (rf.table == table or rf.table.split(".")[-1] == table)
            and rf.applies(roles, identity)
        ]

    def approvers_for(self, rule_ids: Iterable[str]) -> tuple[str, ...]:
        wanted = set(rule_ids)
        names: list[str] = []
        for rule in self.approval_rules:
            if rule.id in wanted:
                names.extend(r for r in rule.approvers if r not in names)
        return tuple(names)

    @cached_property
    def summary(self) -> dict[str, Any]:
        """What the policy says, without connection URLs (they may hold credentials)."""
        return {
            "name": self.name,
            "version": self.version,
            "hash": self.hash,
            "origin": self.origin,
            "identity_provider": self.identity_config.get("provider", "local"),
            "roles": {
                name: {
                    "description": role.description,
                    "access": role.access,
                    "approve": role.approve,
                    "groups": list(role.groups),
                }
                for name, role in self.roles.items()
            },
            "connections": {
                name: {"environment": c.environment, "description": c.description}
                for name, c in self.connections.items()
            },
            "masks": {
                tag: {role: spec.label for role, spec in per_role.items()}
                for tag, per_role in self.masks.items()
            },
            "classifications": {tag: list(p) for tag, p in self.classifications.items()},
            "row_filters": [
                {"id": rf.id, "table": rf.table, "roles": list(rf.roles)} for rf in self.row_filters
            ],
            "approval_rules": [
                {"id": r.id, "description": r.description, "approvers": list(r.approvers)}
                for r in self.approval_rules
            ],
        }
