"""``%gsql`` / ``%%gsql``: SQL cells that go through the governed proxy, never around it.

    %load_ext jupyter_gov
    %%gsql [CONNECTION] [-o NAME | NAME <<] [--purpose TEXT] [--limit N] [--user NAME]
    SELECT full_name, email FROM customers WHERE segment = {{ segment }} LIMIT 5

``{{ var }}`` and ``:var`` are bound as parameters from the notebook's variables, never
pasted into the SQL. User errors are one line (``UsageError``), never a traceback.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.display import display
from sqlglot import exp
from traitlets import Bool, Int, Unicode
from traitlets.config import Configurable

from jupyter_gov import analysis
from jupyter_gov.config import Settings, resolve
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import GovError
from jupyter_gov.policy import Policy
from jupyter_gov.policy.model import SCRATCH
from jupyter_gov.result import ApprovalRequired, Banner, QueryDenied, banner_html, banner_text

_VALUE_OPTIONS = {"-o", "--out", "--purpose", "--limit", "--user", "--unmask", "--connection"}
_FLAG_OPTIONS = {"--explain", "--tables", "--quiet"}


@dataclass
class CellArgs:
    """What the magic's line said, and the SQL that follows it."""

    sql: str = ""
    connection: str | None = None
    out: str | None = None
    purpose: str | None = None
    limit: int | None = None
    user: str | None = None
    unmask: list[str] = field(default_factory=list)
    explain: bool = False
    tables: bool = False
    quiet: bool = False


def parse_line(line: str, cell: str | None, connections: set[str]) -> CellArgs:
    """Split the magic line into options and (for ``%gsql``) the SQL that follows them."""
    args = CellArgs()
    rest = line.strip()
    while rest:
        try:
            lexer = shlex.shlex(rest, posix=True, punctuation_chars=False)
            lexer.whitespace_split = True
            word = lexer.get_token() or ""
            after = lexer.instream.read()
        except ValueError as error:
            raise UsageError(f"Could not read the %gsql options: {error}.") from None
        following = after.lstrip()
        if word in _VALUE_OPTIONS:
            try:
                lexer2 = shlex.shlex(following, posix=True)
                lexer2.whitespace_split = True
                value = lexer2.get_token()
                remainder = lexer2.instream.read()
            except ValueError as error:
                raise UsageError(f"Could not read the value of {word}: {error}.") from None
            if value is None:
                raise UsageError(f"{word} needs a value.")
            _set_option(args, word, value)
            rest = remainder.strip()
        elif word in _FLAG_OPTIONS:
            setattr(args, word[2:], True)
            rest = following
        elif following.startswith("<<") and word.isidentifier():
            args.out = word
            rest = following[2:].strip()
        elif word.startswith("--") or (word.startswith("-") and len(word) == 2):
            raise UsageError(
                f"Unknown option {word}; %gsql takes [CONNECTION] [-o NAME | NAME <<] "
                "[--purpose TEXT] [--limit N] [--user NAME] [--unmask COLS] [--explain] [--tables]."
            )
        elif word in connections | {SCRATCH.name} and args.connection is None and not args.sql:
            args.connection = word
            rest = following
        else:
            args.sql = rest
            break
    if cell is not None:
        if args.sql:
            raise UsageError(
                f"Unexpected text on the %%gsql line: {args.sql!r}; put the SQL in the cell body."
            )
        args.sql = cell
    return args


def _set_option(args: CellArgs, word: str, value: str) -> None:
    if word in ("-o", "--out"):
        if not value.isidentifier():
            raise UsageError(f"{value!r} is not a valid variable name for -o.")
        args.out = value
    elif word == "--purpose":
        args.purpose = value
    elif word == "--limit":
        if not value.isdigit():
            raise UsageError(f"--limit takes a whole number of rows, not {value!r}.")
        args.limit = int(value)
    elif word == "--user":
        args.user = value
    elif word == "--unmask":
        args.unmask = [v.strip() for v in value.split(",") if v.strip()]
    elif word == "--connection":
        args.connection = value


@magics_class
class GovMagic(Magics, Configurable):
    """The governed SQL magics. Configure with ``%config GovMagic.displaylimit = 20``."""

    displaylimit = Int(10, config=True, help="Rows shown under a result (all rows are kept).")
    policy = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Policy file; defaults to $JUPYTER_GOV_POLICY or the built-in demo policy.",
    )
    user = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Act as this user (local identity provider only; recorded as unverified).",
    )
    connection = Unicode(None, allow_none=True, config=True, help="Default connection name.")
    audit_store = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Audit store URL or path; defaults to $JUPYTER_GOV_AUDIT_STORE, the policy's "
        "audit.store, else $JUPYTER_GOV_HOME/audit.sqlite (see jupyter_gov.config).",
    )
    autolimit = Int(0, config=True, help="Server-side row limit for every query (0 = none).")
    show_banner = Bool(True, config=True, help="Show the decision banner above results.")

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        Configurable.__init__(self, config=shell.config if shell is not None else None)
        Magics.__init__(self, shell=shell, **kwargs)
        self._sessions: dict[str | None, GovernedSession] = {}
        self._settings: Settings | None = None
        self._settings_key: tuple[str | None, ...] | None = None

    # -- sessions ------------------------------------------------------------------------

    def settings(self) -> Settings:
        """The resolved configuration; resolved again (new sessions) when a trait changes."""
        key = (self.policy or None, self.audit_store or None, self.connection or None)
        if self._settings is None or key != self._settings_key:
            self._settings = resolve(policy=key[0], audit_store=key[1], connection=key[2])
            self._settings_key = key
            self._sessions.clear()
        return self._settings

    def loaded_policy(self) -> Policy:
        return self.settings().policy

    def session(self, user: str | None = None) -> GovernedSession:
        settings = self.settings()
        user = user or self.user or None
        if user not in self._sessions:
            self._sessions[user] = GovernedSession(
                settings.policy,
                user,
                connection=settings.connection,
                audit=settings.audit_store,
            )
        return self._sessions[user]

    # -- magics --------------------------------------------------------------------------

    @line_cell_magic
    def gsql(self, line: str = "", cell: str | None = None) -> Any:
        """Run SQL through the governed proxy. ``%gsql?`` for the options."""
        try:
            policy = self.loaded_policy()
            args = parse_line(line, cell, set(policy.connections))
            session = self.session(args.user)
            if args.tables:
                return self._show_tables(session, args.connection)
            if not args.sql.strip():
                raise UsageError("There is no SQL to run; write a statement after %%gsql.")
            sql, params = self._bind_variables(args.sql, session, args.connection)
            limit = args.limit or self.autolimit or None
            if args.explain:
                plan = session.explain(
                    sql, params, connection=args.connection, unmask=args.unmask, limit=limit
                )
                return _Explained(plan, session.identity)
            result = session.sql(
                sql,
                params,
                connection=args.connection,
                name=args.out,
                purpose=args.purpose,
                limit=limit,
                unmask=args.unmask,
            )
        except QueryDenied as denied:
            display(Banner(denied.plan, _identity_or_none(session)))
            return None
        except ApprovalRequired as pending:
            return self._approval_required(pending, args, sql, params, session)
        except GovError as error:
            raise UsageError(str(error)) from None
        result.displaylimit = self.displaylimit
        if args.out:
            self.shell.user_ns[args.out] = result
        if args.quiet:
            return None
        return result

    def _approval_required(
        self, pending: ApprovalRequired, args: Any, sql: Any, params: Any, session: Any
    ) -> Any:
        """Show the approval widget when the approvals module is there, else the banner."""
        try:
            from jupyter_gov.widgets import approval_widget_for
        except ImportError:
            display(Banner(pending.plan, _identity_or_none(session)))
            return None
        return approval_widget_for(self, pending, args, sql, params, session)

    @line_magic
    def gsql_whoami(self, line: str = "") -> str:
        """Who the proxy thinks you are, and your roles."""
        try:
            session = self.session(line.strip() or None)
            identity = session.identity
        except GovError as error:
            raise UsageError(str(error)) from None
        roles = ", ".join(session.policy.roles_for(identity)) or "no role"
        state = "verified" if identity.verified else "unverified"
        print(
            f"{identity.display_name} [{identity.subject}] via {identity.auth_method} "
            f"({state}); roles: {roles}; policy {session.policy.name}@{session.policy.hash[:12]}"
        )
        return None

    @line_magic
    def gsql_login(self, line: str = "") -> Any:
        """Sign in with the policy's identity provider: ``%gsql_login [--flow device|browser]``.

        The device flow shows the code and link as a widget and waits in the background;
        ``browser`` opens a browser on this machine (local kernels only).
        """
        words = line.split()
        flow = words[words.index("--flow") + 1] if "--flow" in words[:-1] else "device"
        if flow not in ("device", "browser"):
            raise UsageError("--flow takes device or browser.")
        try:
            from jupyter_gov.signin import login_in_notebook

            session = self.session()
            outcome = login_in_notebook(session.provider, session.audit, flow=flow)
        except GovError as error:
            raise UsageError(str(error)) from None
        if hasattr(outcome, "widget"):
            return outcome
        print(f"Signed in as {outcome.display_name} ({outcome.subject}, {outcome.auth_method}).")
        return None

    @line_magic
    def gsql_logout(self, line: str = "") -> None:
        """Forget the cached sign-in (token cache included)."""
        from jupyter_gov.identity.factory import logout

        session = self.session()
        try:
            identity = session.identity
        except GovError:
            identity = None
        had = logout(session.provider)
        if identity is not None and had:
            from jupyter_gov.signin import audit_sign_in

            audit_sign_in(session.audit, identity, kind="sign_out")
        print("Signed out." if had else "There was no sign-in to forget.")

    def _bind_variables(
        self, sql: str, session: GovernedSession, connection: str | None
    ) -> tuple[str, dict[str, Any]]:
        """Turn ``{{ var }}`` into ``:var`` and collect the values of every ``:var`` used."""
        dialect = session._context(session.identity, connection).dialect
        sql, _ = analysis.template_to_placeholders(sql, dialect)
        try:
            statements = analysis.parse(sql, dialect)
        except analysis.SqlSyntaxError:
            return sql, {}  # the engine denies it, with the position, and audits the attempt
        params: dict[str, Any] = {}
        for statement in statements:
            for placeholder in statement.find_all(exp.Placeholder):
                name = str(placeholder.name or "")
                if not name or name.startswith("g_"):
                    continue
                if name not in self.shell.user_ns:
                    raise UsageError(
                        f"The SQL uses :{name} (or {{{{ {name} }}}}) but no variable {name!r} "
                        "is defined in the notebook."
                    )
                params[name] = self.shell.user_ns[name]
        return sql, params

    def _show_tables(self, session: GovernedSession, connection: str | None) -> Any:
        """Tables of the connection and, per column, what the current user sees."""
        listing = TableListing(", ".join(session.policy.roles_for(session.identity)) or "no role")
        for row in session.visible_columns(connection):
            listing.add(row["table"], row["column"], row["type"], tuple(row["tags"]), row["mask"])
        return listing


class TableListing:
    """What ``%gsql --tables`` shows: columns per table, with the mask your roles get."""

    def __init__(self, roles: str) -> None:
        self.roles = roles
        self.rows: list[tuple[str, str, str, tuple[str, ...], str]] = []

    def add(self, table: str, column: str, dtype: str, tags: tuple[str, ...], mask: str) -> None:
        self.rows.append((table, column, dtype, tags, mask))

    def __repr__(self) -> str:
        lines = [f"What you see as {self.roles}:"]
        current = None
        for table, column, dtype, tags, mask in self.rows:
            if table != current:
                lines.append(f"{table}")
                current = table
            shown = "" if mask == "none" else f"  [{', '.join(tags)} → {mask}]"
            lines.append(f"    {column:<16} {dtype:<16}{shown}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        body = "".join(
            f"<tr><td>{html.escape(t)}</td><td>{html.escape(c)}</td><td>{html.escape(d)}</td>"
            f"<td>{html.escape(', '.join(g))}</td><td>{'' if m == 'none' else '🔒 '}"
            f"{html.escape(m)}</td></tr>"
            for t, c, d, g, m in self.rows
        )
        head = "<tr><th>table</th><th>column</th><th>type</th><th>tags</th><th>you see</th></tr>"
        title = f"<div>What you see as <b>{html.escape(self.roles)}</b>:</div>"
        return f"{title}<table>{head}{body}</table>"


def _identity_or_none(session: GovernedSession) -> Any:
    try:
        return session.identity
    except GovError:  # the banner is still useful without a name
        return None


class _Explained:
    """What ``%gsql --explain`` shows: decision, rules, masks, the SQL that would run."""

    def __init__(self, plan: Any, identity: Any) -> None:
        self.plan = plan
        self.identity = identity

    def __repr__(self) -> str:
        return banner_text(self.plan, self.identity) + "\n\n" + (self.plan.rewritten_sql or "")

    def _repr_html_(self) -> str:
        import html

        sql = html.escape(self.plan.rewritten_sql or "(nothing would run)")
        return banner_html(self.plan, self.identity) + f"<pre>{sql}</pre>"


def load_ipython_extension(ipython: Any) -> None:
    magic = GovMagic(shell=ipython)
    ipython.register_magics(magic)
    try:
        from jupyter_gov.widgets import register_widget_magics
    except ImportError:
        return
    register_widget_magics(ipython, magic)
