"""Decide allow / deny / approval-required for each statement, with rule ids and a sentence.

Everything here is an allow-list: a statement root must be a SELECT, set operation,
INSERT, UPDATE or DELETE; every table source must resolve to a catalog relation, a CTE
or this session's own result; every function and table function must be on the list.
Anything sqlglot could only parse as a ``Command``, and anything that does not parse at
all, is denied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from sqlglot import exp
from sqlglot.optimizer.simplify import simplify

from jupyter_gov.analysis import READ_ROOTS, WRITE_ROOTS, StatementInfo, function_name
from jupyter_gov.connectors.profile import Profile
from jupyter_gov.errors import GovError
from jupyter_gov.exposure import Exposure
from jupyter_gov.functions import function_allowed, table_function_allowed
from jupyter_gov.identity import Identity
from jupyter_gov.policy import Connection, Policy

Verdict = Literal["allow", "deny", "approval_required"]

_ROOT_SENTENCES: dict[str, str] = {
    "drop": "DROP statements are not allowed through jupyter-gov; ask a database owner.",
    "truncatetable": "TRUNCATE is not allowed through jupyter-gov; ask a database owner.",
    "alter": "ALTER statements are not allowed through jupyter-gov; ask a database owner.",
    "create": "CREATE statements are not allowed through jupyter-gov; ask a database owner.",
    "grant": "GRANT and REVOKE are not allowed through jupyter-gov; access comes from the policy.",
    "revoke": "GRANT and REVOKE are not allowed through jupyter-gov; access comes from the policy.",
    "attach": "ATTACH and DETACH would reach databases outside the policy and are denied.",
    "detach": "ATTACH and DETACH would reach databases outside the policy and are denied.",
    "install": "INSTALL and LOAD of extensions are denied: they change what the engine can do.",
    "load": "INSTALL and LOAD of extensions are denied: they change what the engine can do.",
    "copy": "COPY reads or writes files outside the policy and is denied; query the table instead.",
    "export": "EXPORT and IMPORT DATABASE are denied: they move whole databases past the masks.",
    "import": "EXPORT and IMPORT DATABASE are denied: they move whole databases past the masks.",
    "pragma": "PRAGMA statements are denied: they read or change engine settings.",
    "set": "SET statements are denied: the governed connection's settings are fixed.",
    "reset": "RESET statements are denied: the governed connection's settings are fixed.",
    "use": "USE is denied: name the table you mean, within the connection.",
    "summarize": "SUMMARIZE is denied: it returns raw minimum and maximum values; use aggregates.",
    "describe": "DESCRIBE is denied; use %gsql --tables (or jupyter-gov tables) to list columns.",
    "pivot": "The PIVOT statement is denied; write it as SELECT ... FROM t PIVOT (...).",
    "merge": "MERGE is not allowed yet; use INSERT, UPDATE or DELETE.",
    "explain": "EXPLAIN is denied: plans leak metadata; use jupyter-gov explain for the decision.",
    "call": "CALL is denied: procedures and table functions run outside the policy.",
    "checkpoint": "CHECKPOINT is denied: it is database administration.",
    "vacuum": "VACUUM is denied: it is database administration.",
    "create secret": "Secrets cannot be created through jupyter-gov.",
}


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one statement."""

    verdict: Verdict
    rule: str
    reason: str
    statement: int = 0  # index in the cell


@dataclass(frozen=True)
class Context:
    """Everything a rule may look at besides the statement itself."""

    policy: Policy
    identity: Identity
    roles: tuple[str, ...]
    connection: Connection
    dialect: str

    @property
    def can_write(self) -> bool:
        return any(self.policy.roles[r].can_write for r in self.roles)

    @property
    def profile(self) -> Profile | None:
        """The backend profile of the connection used (by URL scheme, else by dialect)."""
        return backend_profile(self.connection.url, self.dialect, self.connection.name)


def backend_profile(url: str, dialect: str, name: str = "") -> Profile | None:
    from jupyter_gov.connectors.registry import profile_for_dialect, profile_for_url

    try:
        return profile_for_url(url, name)
    except GovError:
        return profile_for_dialect(dialect)


def _every_profile() -> list[Profile]:
    from jupyter_gov.connectors.registry import profiles

    return list(profiles().values())


def _walls(ctx: Context) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(functions, dangerous functions, file readers) of the connection's profile.

    A connection no profile answers gets no extra functions and the union of every
    profile's dangerous functions and file readers: fail closed.
    """
    profile = ctx.profile
    if profile is not None:
        return profile.functions, profile.dangerous_functions, profile.file_readers
    every = _every_profile()
    return (
        frozenset(),
        frozenset().union(*(p.dangerous_functions for p in every)),
        frozenset().union(*(p.file_readers for p in every)),
    )


def check_identity(ctx: Context) -> list[Finding]:
    """Rules about the caller, before any SQL is looked at."""
    if not ctx.roles:
        return [
            Finding(
                "deny",
                "no-role",
                f"{ctx.identity.display_name} has no role in policy {ctx.policy.name!r}; "
                "ask an administrator to add you to a group that maps to a role.",
            )
        ]
    allowed = [r for r in ctx.roles if not ctx.policy.roles[r].connections]
    allowed += [r for r in ctx.roles if ctx.connection.name in ctx.policy.roles[r].connections]
    if not allowed:
        return [
            Finding(
                "deny",
                "connection-not-allowed",
                f"None of your roles ({', '.join(ctx.roles)}) may use connection "
                f"{ctx.connection.name!r}.",
            )
        ]
    return []


#: The nodes :func:`check_statement` gathers in its walk of the statement.
_GATHERED = (exp.Directory, exp.Pivot, exp.Placeholder)
_DDL = (exp.Drop, exp.Create, exp.Alter, exp.Copy, exp.Set, exp.Pragma)
#: Every node its walk looks at.
_CHECKED = (*_GATHERED, exp.Command, *WRITE_ROOTS, *_DDL)


def check_statement(info: StatementInfo, ctx: Context, index: int = 0) -> list[Finding]:
    """Static rules on one parsed statement: root type, sources, functions, writes."""
    findings: list[Finding] = []

    def deny(rule: str, reason: str) -> None:
        findings.append(Finding("deny", rule, reason, index))

    root = info.expression
    if not isinstance(root, READ_ROOTS + WRITE_ROOTS):
        kind = info.kind
        if isinstance(root, exp.Command):
            text = str(root.this or "").lower()
            rest = str(root.expression or "").lower().split()
            kind = f"{text} secret" if text == "create" and rest[:1] == ["secret"] else text
        deny(
            f"deny-{kind.replace(' ', '-')}" if kind in _ROOT_SENTENCES else "statement-type",
            _ROOT_SENTENCES.get(
                kind,
                f"{kind.upper()} statements are not allowed through jupyter-gov; only SELECT, "
                "INSERT, UPDATE and DELETE are.",
            ),
        )
        return findings

    # One walk: the Directory, PIVOTs and placeholders checked below are gathered here.
    gathered: dict[type[exp.Expr], list[exp.Expr]] = {kind: [] for kind in _GATHERED}
    for node in root.walk():
        if not isinstance(node, _CHECKED):
            continue  # most nodes: one check instead of five
        if isinstance(node, _GATHERED):
            for kind in _GATHERED:
                if isinstance(node, kind):
                    gathered[kind].append(node)
        if node is root:
            continue
        if isinstance(node, exp.Command):
            deny(
                "command-fallback",
                "The statement contains a command jupyter-gov cannot analyse, so it is denied.",
            )
        elif isinstance(node, WRITE_ROOTS):
            deny(
                "embedded-write",
                "A data-modifying statement inside a query (for example in a "
                "CTE) is denied; run the write on its own.",
            )
        elif isinstance(node, _DDL):
            deny("embedded-ddl", "The statement embeds a DDL or settings statement and is denied.")

    extra_functions, dangerous, file_readers = _walls(ctx)
    for ref in info.tables:
        if ref.kind == "path":
            deny(
                "file-read",
                f"Reading files directly ({ref.name!r}) is denied; query a table "
                "of the connection instead.",
            )
        elif ref.kind == "function":
            name = function_name(ref.node.this)
            if name in file_readers:
                deny(
                    "file-read",
                    f"{name}() reads files or URLs and is denied; query a table "
                    "of the connection instead.",
                )
            elif name in dangerous or not table_function_allowed(
                name, ctx.policy.allow_table_functions
            ):
                deny("table-function", f"The table function {name}() is not on the allow-list.")
        elif ref.kind == "unknown":
            deny(
                "unknown-table",
                f"Table {ref.name!r} is not in connection "
                f"{ctx.connection.name!r} (or is outside the policy); check its name.",
            )
        elif ref.kind == "system":
            deny(
                "system-catalog",
                f"{ref.name!r} is part of the database's own catalog, which governed "
                "queries cannot read; use %gsql --tables (or jupyter-gov tables) instead.",
            )
        elif ref.kind == "ambiguous":
            deny(
                "ambiguous-name",
                f"{ref.name!r} could name a CTE or a table here and jupyter-gov does not "
                "guess which; give the CTE another name.",
            )
        elif ref.kind == "shadowing_cte":
            deny(
                "cte-shadows-table",
                f"The CTE {ref.name!r} has the name of a governed table; rename the CTE.",
            )

    for name, node in info.functions:
        if isinstance(node, (exp.ReadCSV, exp.ReadParquet)) or name in file_readers:
            deny("file-read", f"{name}() reads files or URLs and is denied.")
        elif name in dangerous:
            deny(
                "dangerous-function",
                f"The function {name}() reaches files, settings or other servers and is "
                "never allowed through jupyter-gov, whatever the policy lists.",
            )
        elif not function_allowed(
            name,
            extra_functions,
            ctx.policy.allow_functions,
            ctx.policy.deny_functions,
        ):
            deny(
                "function-not-allowed",
                f"The function {name}() is not on jupyter-gov's "
                "allow-list; ask a policy owner to add it to guardrails.allow_functions.",
            )

    if gathered[exp.Directory]:
        deny(
            "file-write",
            "INSERT OVERWRITE DIRECTORY writes files outside the policy and is denied.",
        )

    for pivot in gathered[exp.Pivot]:
        if pivot.args.get("unpivot"):
            continue
        for field in pivot.args.get("fields") or []:
            values = field.expressions if isinstance(field, exp.In) else []
            if not values or any(v.find(exp.Column) for v in values):
                deny(
                    "pivot-needs-values",
                    "PIVOT needs its values listed (FOR col IN ('a', 'b')): a governed "
                    "table's source binds parameters, which a dynamic PIVOT cannot take.",
                )

    for placeholder in gathered[exp.Placeholder]:
        if str(placeholder.name).startswith("g_"):
            deny("reserved-parameter", "Parameter names starting with g_ are reserved.")

    if info.is_write:
        findings.extend(_check_write(info, ctx, index))
    return _dedupe(findings)


def _check_write(info: StatementInfo, ctx: Context, index: int) -> list[Finding]:
    findings: list[Finding] = []
    root = info.expression
    if isinstance(root, exp.Insert) and isinstance(root.this, exp.Directory):
        # Spark/Hive ``INSERT OVERWRITE [LOCAL] DIRECTORY``: the rows land in files, unaudited.
        return [
            Finding(
                "deny",
                "file-write",
                "Writing query results to files (INSERT ... DIRECTORY) is denied; name the "
                "result in the notebook instead.",
                index,
            )
        ]
    if not ctx.can_write:
        findings.append(
            Finding(
                "deny",
                "read-only-role",
                f"Your roles ({', '.join(ctx.roles)}) are read-only; writes are denied.",
                index,
            )
        )
        return findings
    if isinstance(root, (exp.Update, exp.Delete)):
        where = root.args.get("where")
        if where is None or _is_tautology(where.this):
            verb = "UPDATE" if isinstance(root, exp.Update) else "DELETE"
            findings.append(
                Finding(
                    "deny",
                    "unbounded-write",
                    f"{verb} without a WHERE clause that "
                    "restricts rows is denied; add a real condition.",
                    index,
                )
            )
    if root.args.get("returning") is not None:
        findings.append(
            Finding(
                "deny",
                "write-returning",
                "RETURNING is denied on governed writes; query the table afterwards.",
                index,
            )
        )
    return findings


def _is_tautology(condition: exp.Expr) -> bool:
    """True when a WHERE restricts nothing: constant, or trivially true such as ``a = a``."""
    simplified = simplify(condition.copy())
    if isinstance(simplified, exp.Boolean) and simplified.this:
        return True
    if not any(isinstance(n, exp.Column) for n in simplified.walk()):
        return True
    if isinstance(simplified, exp.Or):
        return any(_is_tautology(side) for side in (simplified.left, simplified.right))
    if isinstance(simplified, (exp.EQ, exp.GTE, exp.LTE, exp.NullSafeEQ)):
        return simplified.left == simplified.right
    if isinstance(simplified, exp.Like) and isinstance(simplified.expression, exp.Literal):
        return simplified.expression.this == "%"
    if isinstance(simplified, exp.Paren):
        return _is_tautology(simplified.this)
    return False


def check_approvals(
    info: StatementInfo,
    ctx: Context,
    exposure: Exposure,
    index: int = 0,
    spent: Mapping[str, int] | None = None,
) -> list[Finding]:
    """Approval rules from the policy, given what the statement can output raw.

    A rule with ``unmasked_tags`` applies when raw values with one of those tags can reach
    the output; its ``max_rows`` is a number of *values* (rows × raw classified columns,
    through every construct, see :mod:`jupyter_gov.exposure`), counted together with what
    this session already received (``spent``, by rule id).
    """
    findings = []
    kind = "select" if info.is_read else info.kind
    for rule in ctx.policy.approval_rules:
        if rule.statements and kind not in rule.statements:
            continue
        if rule.roles and not set(rule.roles) & set(ctx.roles):
            continue
        if rule.environments and ctx.connection.environment not in rule.environments:
            continue
        if rule.connections and ctx.connection.name not in rule.connections:
            continue
        if rule.unmasked_tags:
            hit = exposure.exposed_tags(rule.unmasked_tags)
            if not hit:
                continue
            before = (spent or {}).get(rule.id, 0)
            values = _row_bound(exposure, rule.unmasked_tags)
            if rule.max_rows is not None and values is not None:
                if before + values <= rule.max_rows:
                    continue
                size = f"up to {values:,} raw values" + (
                    f", {before:,} already this session" if before else ""
                )
            else:
                size = "an unbounded number of raw values"
            reason = (
                f"{rule.description or rule.id} (unmasked: {', '.join(sorted(hit))}; "
                f"{size}); approvers: {', '.join(rule.approvers)}."
            )
        else:
            reason = f"{rule.description or rule.id} Approvers: {', '.join(rule.approvers)}."
        findings.append(Finding("approval_required", f"approval:{rule.id}", reason, index))
    return findings


def _row_bound(exposure: Exposure, tags: Iterable[str]) -> int | None:
    """At most how many raw values with these tags the statement outputs; None: unbounded.

    Values, not rows: ``list(ssn)`` under ``LIMIT 1`` is one row and ten thousand values.
    """
    return exposure.values(tags)


def verdict_of(findings: Iterable[Finding]) -> Verdict:
    """Deny wins over approval, approval over allow: a cell is decided as a whole."""
    verdicts = {f.verdict for f in findings}
    if "deny" in verdicts:
        return "deny"
    if "approval_required" in verdicts:
        return "approval_required"
    return "allow"


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    out = []
    for finding in findings:
        if (finding.rule, finding.reason) not in seen:
            seen.add((finding.rule, finding.reason))
            out.append(finding)
    return out
