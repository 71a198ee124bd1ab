"""``%gsql`` / ``%%gsql``: SQL cells that go through the governed proxy, never around it.

    %load_ext jupyter_gov
    %%gsql [CONNECTION] [-o NAME | NAME <<] [--save PATH] [--purpose TEXT] [--limit N]
    SELECT full_name, email FROM customers WHERE segment = {{ segment }} LIMIT 5

``%gsql?`` lists every option (:data:`OPTIONS`, parsed with IPython's ``magic_arguments``).
``{{ var }}`` and ``:var`` are bound as parameters from the notebook's variables, never
pasted into the SQL. User errors are one line (``UsageError``), never a traceback.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from sqlglot import exp
from traitlets import Bool, Int, Unicode
from traitlets.config import Configurable

from jupyter_gov import analysis, progress
from jupyter_gov.config import Settings, resolve
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import GovError
from jupyter_gov.policy import Policy
from jupyter_gov.policy.model import SCRATCH
from jupyter_gov.result import (
    ApprovalRequired,
    Banner,
    QueryDenied,
    banner_html,
    banner_text,
    identity_or_none,
)

#: The options of ``%gsql`` / ``%%gsql``, in the order ``%gsql?`` lists them. One table
#: feeds IPython's parser (and so the usage text) and :func:`parse_line`, which needs to
#: know which options take a value to find where the SQL of a one-line ``%gsql`` begins.
OPTIONS = (
    argument("-o", "--out", metavar="NAME", help="Keep the result in the variable NAME."),
    argument(
        "--connection",
        metavar="NAME",
        help="Run on this connection of the policy (or give its name first, as CONNECTION).",
    ),
    argument(
        "--save",
        metavar="PATH",
        help="Also write the result as Parquet with its provenance (jupyter-gov provenance).",
    ),
    argument("--purpose", metavar="TEXT", help="Why you run this; recorded in the audit."),
    argument("--limit", metavar="N", help="Server-side row limit for this statement."),
    argument(
        "--user",
        metavar="NAME",
        help="Act as this user (local identity provider only; recorded as unverified).",
    ),
    argument(
        "--unmask",
        metavar="TAGS",
        help="Ask an approver to unmask these tags, comma-separated.",
    ),
    argument("--explain", action="store_true", help="Decide and rewrite, but run nothing."),
    argument(
        "--tables",
        action="store_true",
        help="List the connection's tables and what you see of each column.",
    ),
    argument("--quiet", action="store_true", help="Run (and keep with -o) without showing."),
    argument(
        "connection_name",
        nargs="?",
        metavar="CONNECTION",
        help="A connection name of the policy, before anything else.",
    ),
    argument(
        "sql",
        nargs="*",
        metavar="SQL",
        help="%%%%gsql: the statement, in the cell body. %%gsql: the rest of the line.",
    ),
)

#: Option word -> its long form, for the options that take a value.
_VALUE_OPTIONS = {
    word: option.args[-1]
    for option in OPTIONS
    if option.args[0].startswith("-") and option.kwds.get("action") != "store_true"
    for word in option.args
}
_FLAG_OPTIONS = frozenset(
    word for option in OPTIONS if option.kwds.get("action") == "store_true" for word in option.args
)


def with_options(options: tuple[argument, ...]) -> Any:
    """``@magic_arguments()`` with ``options`` applied in order: the parser and ``%magic?``."""

    def decorate(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return magic_arguments()(function)

    return decorate


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
    save: str | None = None  # write the result as Parquet with its provenance


def parse_line(line: str, cell: str | None, connections: set[str]) -> CellArgs:
    """Split the magic line into options and (for ``%gsql``) the SQL that follows them.

    The options go to IPython's ``magic_arguments`` parser; the SQL is kept verbatim,
    quotes and all, so it is never tokenized as shell words.
    """
    words: list[str] = []
    sql = ""
    given_connection = False
    rest = line.strip()
    while rest:
        word, after = _next_word(rest, "the %gsql options")
        following = after.lstrip()
        if word in _VALUE_OPTIONS:
            if not following:
                raise UsageError(f"{word} needs a value; see %gsql? for the options.")
            value, remainder = _next_word(following, f"the value of {word}")
            words.append(f"{_VALUE_OPTIONS[word]}={value}")  # a value may start with "-"
            given_connection |= _VALUE_OPTIONS[word] == "--connection"
            rest = remainder.strip()
        elif word in _FLAG_OPTIONS:
            words.append(word)
            rest = following
        elif following.startswith("<<") and word.isidentifier():
            words.append(f"--out={word}")
            rest = following[2:].strip()
        elif word.startswith("--") or (word.startswith("-") and len(word) == 2):
            raise UsageError(f"Unknown option {word}; see %gsql? for the options.")
        elif word in connections | {SCRATCH.name} and not given_connection:
            words.append(word)
            given_connection = True
            rest = following
        else:
            sql = rest
            break
    try:
        parsed = GovMagic.gsql.parser.parse_args(words)
    except UsageError as error:
        raise UsageError(f"%gsql: {error}; see %gsql? for the options.") from None
    args = _cell_args(parsed)
    args.sql = sql
    if cell is not None:
        if args.sql:
            raise UsageError(
                f"Unexpected text on the %%gsql line: {args.sql!r}; put the SQL in the cell body."
            )
        args.sql = cell
    return args


def _next_word(text: str, what: str) -> tuple[str, str]:
    """The first shell word of ``text`` and the raw text after it."""
    try:
        lexer = shlex.shlex(text, posix=True)
        lexer.whitespace_split = True
        word = lexer.get_token() or ""
        return word, lexer.instream.read()
    except ValueError as error:
        raise UsageError(f"Could not read {what}: {error}.") from None


def _cell_args(parsed: Any) -> CellArgs:
    """Check the values the parser gave and turn them into :class:`CellArgs`."""
    if parsed.out is not None and not parsed.out.isidentifier():
        raise UsageError(f"{parsed.out!r} is not a valid variable name for -o.")
    if parsed.limit is not None and not parsed.limit.isdigit():
        raise UsageError(f"--limit takes a whole number of rows, not {parsed.limit!r}.")
    return CellArgs(
        connection=parsed.connection or parsed.connection_name,
        out=parsed.out,
        purpose=parsed.purpose,
        limit=int(parsed.limit) if parsed.limit is not None else None,
        user=parsed.user,
        unmask=[v.strip() for v in (parsed.unmask or "").split(",") if v.strip()],
        explain=parsed.explain,
        tables=parsed.tables,
        quiet=parsed.quiet,
        save=parsed.save,
    )


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
    gateway = Unicode(
        None,
        allow_none=True,
        config=True,
        help="A gateway (grpc+tls://host:port) that runs every query instead of this kernel; "
        "defaults to $JUPYTER_GOV_GATEWAY (see docs/gateway.md).",
    )
    autolimit = Int(0, config=True, help="Server-side row limit for every query (0 = none).")
    show_banner = Bool(True, config=True, help="Show the decision banner above results.")

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        Configurable.__init__(self, config=shell.config if shell is not None else None)
        Magics.__init__(self, shell=shell, **kwargs)
        self._sessions: dict[str | None, GovernedSession] = {}
        self._settings: Settings | None = None
        self._settings_key: tuple[str | None, ...] | None = None
        self._remote: Any = None
        self._remote_key: tuple[str | None, ...] | None = None

    def remote(self) -> Any:
        """The gateway session when the configuration names a gateway, else None."""
        from jupyter_gov.config import resolve_gateway

        found = resolve_gateway(self.gateway or None)
        if found is None:
            return None
        key = (found.address, found.ca_file, self.connection or None)
        if self._remote is None or key != self._remote_key:
            from jupyter_gov.connectors.gateway import GatewaySession

            self._remote = GatewaySession(found, connection=self.connection or None)
            self._remote_key = key
        return self._remote

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
        remote = self.remote()
        if remote is not None:
            return remote.policy  # type: ignore[no-any-return]
        return self.settings().policy

    def session(self, user: str | None = None) -> GovernedSession:
        remote = self.remote()
        if remote is not None:
            if user or self.user:
                raise GovError(
                    "There is no --user in gateway mode: the gateway knows you by your token."
                )
            return remote  # type: ignore[no-any-return]
        settings = self.settings()
        user = user or self.user or None
        if user not in self._sessions:
            self._sessions[user] = GovernedSession(
                settings.policy,
                user,
                connection=settings.connection,
                audit=settings.audit_store,
            )
            self._sessions[user].progress = progress.notebook
        return self._sessions[user]

    # -- magics --------------------------------------------------------------------------

    @line_cell_magic
    @with_options(OPTIONS)
    def gsql(self, line: str = "", cell: str | None = None) -> Any:
        """Run SQL through the governed proxy: checked, masked, audited.

        %%gsql [options] [CONNECTION] [NAME <<]   the SQL in the cell body
        %gsql [options] [CONNECTION] SQL          the SQL on the rest of the line

        NAME << is the same as -o NAME. {{ var }} and :var are bound from the notebook's
        variables as parameters, never pasted into the SQL.
        """
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
            session.job_cell = self.shell.execution_count  # lineage: the job's cell
            result = session.sql(
                sql,
                params,
                connection=args.connection,
                name=args.out,
                purpose=args.purpose,
                limit=limit,
                unmask=args.unmask,
            )
            if args.save:
                result.save(args.save)
        except QueryDenied as denied:
            display(Banner(denied.plan, identity_or_none(session)))
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
        """Show the approval widget, or the banner where ipywidgets is not installed."""
        try:
            from jupyter_gov.widgets import approval_widget_for
        except ImportError:
            display(Banner(pending.plan, identity_or_none(session)))
            return None
        return approval_widget_for(self, pending, args, sql, params, session)

    @line_magic
    @magic_arguments()
    @argument("user", nargs="?", metavar="USER", help="Ask as this user (local provider only).")
    def gsql_whoami(self, line: str = "") -> str:
        """Who the proxy thinks you are, and your roles."""
        parsed = parse_options(self.gsql_whoami, line)
        try:
            session = self.session(parsed.user)
            identity = session.identity
        except GovError as error:
            raise UsageError(str(error)) from None
        roles = ", ".join(session.policy.roles_for(identity)) or "no role"
        state = "verified" if identity.verified else "unverified"
        print(
            f"{identity.display_name} [{identity.subject}] via {identity.auth_method} "
            f"({state}); roles: {roles}; policy {session.policy.name}@{session.policy.short_hash}"
        )
        return None

    @line_magic
    @magic_arguments()
    @argument("--connection", help="Connection to profile (default: the session's).")
    def gsql_classify(self, line: str = "") -> str:
        """Profile unclassified columns and print a proposed ``classifications:`` block."""
        parsed = parse_options(self.gsql_classify, line)
        if self.remote() is not None:
            raise UsageError(
                "In gateway mode the kernel holds no credentials to sample columns with: run "
                "`jupyter-gov classify --policy <the gateway's policy>` where the gateway runs, "
                "and pin what it proposes in that policy."
            )
        try:
            from jupyter_gov.pii.classify import classifications_block
            from jupyter_gov.pii.service import propose

            block = classifications_block(propose(self.session(), parsed.connection))
        except GovError as error:
            raise UsageError(str(error)) from None
        print(block)
        return None  # type: ignore[return-value]

    @line_magic
    @magic_arguments()
    @argument(
        "--flow",
        choices=("device", "browser"),
        default="device",
        help="device (default): a code and a link, shown as a widget; browser: opens a "
        "browser on this machine (local kernels only).",
    )
    def gsql_login(self, line: str = "") -> Any:
        """Sign in with the policy's identity provider.

        The device flow shows the code and link as a widget and waits in the background.
        """
        flow = parse_options(self.gsql_login, line).flow
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
    @magic_arguments()
    def gsql_logout(self, line: str = "") -> None:
        """Forget the cached sign-in (token cache included)."""
        from jupyter_gov.identity.factory import logout

        parse_options(self.gsql_logout, line)
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
        dialect = session.dialect(connection)
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


def parse_options(magic: Any, line: str) -> Any:
    """Parse a magic's line with its ``magic_arguments``; a bad one is one sentence."""
    try:
        return parse_argstring(magic, line)
    except UsageError as error:
        name = getattr(magic, "__name__", "the magic")
        raise UsageError(f"%{name}: {error}; see %{name}? for the options.") from None


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
