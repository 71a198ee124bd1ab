"""``jupyter-gov``: a thin command line over the same engine the magic uses.

Exit status: 0 ran, 1 failed (database, audit store), 2 usage or configuration, 3 denied,
4 approval required, 5 approval step refused, 6 not signed in or identity refused. Each
error class carries its own (``GovError.exit_code``; the table is ``docs/errors.md``).
``--format json`` prints one object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jupyter_gov import progress
from jupyter_gov.audit import AuditStore
from jupyter_gov.config import resolve, resolve_store
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import EXIT_FAILED, ApprovalRequired, GovError, QueryDenied, UsageError
from jupyter_gov.policy import Policy
from jupyter_gov.result import banner_text

EXIT_OK = 0


def _config_options(parser: argparse.ArgumentParser) -> None:
    """``--policy`` and ``--store``, resolved as every front end does (jupyter_gov.config)."""
    parser.add_argument("--policy", help="policy file (default: $JUPYTER_GOV_POLICY or the demo)")
    parser.add_argument(
        "--store",
        help="audit store URL or path (default: $JUPYTER_GOV_AUDIT_STORE, the policy's "
        "audit.store, else $JUPYTER_GOV_HOME/audit.sqlite)",
    )


def _gateway_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateway",
        help="run through this gateway (grpc+tls://host:port; default: $JUPYTER_GOV_GATEWAY); "
        "the token comes from $JUPYTER_GOV_GATEWAY_TOKEN",
    )


def _session(args: argparse.Namespace) -> Any:
    """The gateway's remote session when one is configured, else the in-process engine."""
    from jupyter_gov.config import resolve_gateway

    found = resolve_gateway(getattr(args, "gateway", None))
    if found is None:
        return GovernedSession(
            args.policy, args.user, connection=getattr(args, "connection", None), audit=args.store
        )
    if args.user:
        raise UsageError("There is no --user in gateway mode: the gateway knows you by your token.")
    from jupyter_gov.connectors.gateway import GatewaySession

    return GatewaySession(found, connection=getattr(args, "connection", None))


def _query_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", help="the SQL to run (use - to read it from standard input)")
    _config_options(parser)
    _gateway_option(parser)
    parser.add_argument("--user", help="act as this user (local identity provider only)")
    parser.add_argument("--connection", help="connection name from the policy")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="bind :NAME to VALUE (repeatable)",
    )
    parser.add_argument(
        "--unmask", default="", help="tags to unmask with an approval, comma-separated"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-gov",
        description="Governed SQL: guardrails, masking by rewrite and a tamper-evident audit.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    query = commands.add_parser("query", help="run SQL through the proxy")
    _query_options(query)
    query.add_argument("--limit", type=int, help="server-side row limit")
    query.add_argument("--purpose", help="why you run this (recorded in the audit)")
    query.add_argument("--max-rows", type=int, default=50, help="rows printed in table format")

    explain = commands.add_parser("explain", help="decide and rewrite without running")
    _query_options(explain)

    tables = commands.add_parser("tables", help="list tables and what you see of each column")
    _config_options(tables)
    tables.add_argument("--user")
    _gateway_option(tables)
    tables.add_argument("--connection")
    tables.add_argument("--format", choices=["table", "json"], default="table")

    whoami = commands.add_parser("whoami", help="who the proxy thinks you are")
    _config_options(whoami)
    whoami.add_argument("--user")
    _gateway_option(whoami)
    gateway = commands.add_parser("gateway", help="run the governed engine as a service")
    gateway_commands = gateway.add_subparsers(
        dest="gateway_command", required=True, metavar="ACTION"
    )
    serve = gateway_commands.add_parser(
        "serve", help="serve the policy over Arrow Flight; holds the credentials and keys"
    )
    serve.add_argument("--policy", required=True, help="the policy file the gateway enforces")
    serve.add_argument("--store", help="audit store URL or path (default: as for every command)")
    serve.add_argument(
        "--listen", default="127.0.0.1:0", help="HOST:PORT (default: loopback, a free port)"
    )
    serve.add_argument("--tls-cert", help="PEM certificate chain for grpc+tls")
    serve.add_argument("--tls-key", help="PEM private key for grpc+tls")
    serve.add_argument(
        "--env-file",
        help="NAME=VALUE credentials for the policy's ${VAR}s; must be readable by its owner only",
    )
    serve.add_argument(
        "--pg-listen",
        metavar="HOST:PORT",
        help="also serve the PostgreSQL wire protocol here (psql, BI tools; the token is the "
        "password), with the same sessions and audit",
    )
    serve.add_argument(
        "--max-sessions",
        type=int,
        default=256,
        help="engine sessions kept at most, one per identity; the least recently used idle "
        "one is closed beyond it (default 256)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="close an identity's session (and its connections) this long after its last "
        "call (default 900)",
    )
    _checkpoint_options(serve)

    login = commands.add_parser("login", help="sign in with the policy's identity provider")
    _config_options(login)
    login.add_argument("--flow", choices=["device", "browser"], default="device")
    logout = commands.add_parser("logout", help="forget the cached sign-in")
    _config_options(logout)

    config = commands.add_parser("config", help="where the policy, audit store and keys are")
    _config_options(config)
    config.add_argument("--connection")
    config.add_argument("--format", choices=["table", "json"], default="table")

    audit = commands.add_parser("audit", help="read and verify the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_commands.add_parser("verify", help="walk the hash chain")
    _config_options(verify)
    verify.add_argument("--checkpoint", help="a JSON checkpoint file to detect a truncated tail")
    verify.add_argument(
        "--public-key", help="the signer's Ed25519 public key (PEM): the checkpoint must be signed"
    )
    verify.add_argument("--format", choices=["table", "json"], default="table")
    _gateway_option(verify)
    tail = audit_commands.add_parser("tail", help="the newest events")
    _config_options(tail)
    tail.add_argument("-n", type=int, default=20)
    tail.add_argument("--format", choices=["table", "json"], default="table")
    _gateway_option(tail)
    checkpoint = audit_commands.add_parser("checkpoint", help="print head hash and count")
    _config_options(checkpoint)
    _gateway_option(checkpoint)
    checkpoint.add_argument("--sign-key", help="sign it with this Ed25519 private key (PEM)")
    keygen = audit_commands.add_parser("keygen", help="make an Ed25519 checkpoint-signing key")
    keygen.add_argument("file", help="private key path; the public key goes to FILE.pub")

    provenance = commands.add_parser(
        "provenance", help="verify a saved Parquet file against the audit"
    )
    provenance.add_argument("path", help="a file written by result.save() or %%gsql --save")
    _config_options(provenance)
    provenance.add_argument("--format", choices=["text", "json"], default="text")

    report = commands.add_parser("report", help="a compliance report of the audit")
    _config_options(report)
    report.add_argument("--since", default="30d", help="how far back: 30d, 12h, 90m (default 30d)")
    report.add_argument("--format", choices=["html", "md", "csv"], default="md")
    report.add_argument("--output", "-o", help="write to this file instead of standard output")
    report.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="a JSON checkpoint file kept elsewhere, checked against the log (repeatable)",
    )
    _gateway_option(report)

    approvals = commands.add_parser("approvals", help="list, show, approve or deny requests")
    approvals.add_argument("action", choices=["list", "show", "approve", "deny", "revoke"])
    approvals.add_argument("id", nargs="?", help="the request id (show, approve, deny, revoke)")
    approvals.add_argument("--comment", default="", help="shown to the requester")
    approvals.add_argument("--state", default="pending", help="list: pending (default) or all")
    approvals.add_argument("--limit", type=int, help="list: at most this many (default: all)")
    approvals.add_argument("--offset", type=int, default=0, help="list: skip this many first")
    approvals.add_argument("--user", help="act as this user (local identity provider only)")
    approvals.add_argument("--policy")
    approvals.add_argument("--store")
    approvals.add_argument("--format", choices=["table", "json"], default="table")
    _gateway_option(approvals)

    policy = commands.add_parser("policy", help="check or show a policy")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    check = policy_commands.add_parser("check", help="validate a policy file")
    check.add_argument("file")
    show = policy_commands.add_parser("show", help="print the built-in demo policy or a summary")
    show.add_argument("file", nargs="?")
    policy_commands.add_parser("schema", help="print the policy JSON Schema")

    demo = commands.add_parser("demo", help="run a notebook headlessly and print its outputs")
    demo.add_argument("notebook", nargs="?", default="notebooks/quickstart.ipynb")
    demo.add_argument("--timeout", type=int, default=300)
    classify = commands.add_parser(
        "classify", help="profile unclassified columns; print a proposed classifications: block"
    )
    _config_options(classify)
    classify.add_argument("--user", help="act as this user (local identity provider only)")
    classify.add_argument("--connection", help="connection name from the policy")
    classify.add_argument("--write", metavar="FILE", help="also write the block to FILE")
    detok = commands.add_parser(
        "detokenize", help="reverse PII encrypt tokens in text (authorized roles; audited)"
    )
    _config_options(detok)
    detok.add_argument("--user", help="act as this user (local identity provider only)")
    detok.add_argument("text", nargs="?", help="text holding tokens (default: standard input)")
    mcp = commands.add_parser("mcp", help="serve governed tools to an AI agent over MCP")
    mcp.add_argument("--agent", required=True, help="the agent's name in the policy's agents:")
    _config_options(mcp)
    mcp.add_argument("--user", help="act for this user (local identity provider only)")
    mcp.add_argument("--no-user", action="store_true", help="the agent acts for nobody")
    mcp.add_argument("--connection", help="default connection name from the policy")
    mcp.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    mcp.add_argument("--host", default="127.0.0.1", help="HTTP: address to bind (loopback)")
    mcp.add_argument("--port", type=int, default=8765, help="HTTP: port (path /mcp)")
    _pgwire_parser(commands)
    return parser


def _checkpoint_options(parser: argparse.ArgumentParser) -> None:
    """The signed-checkpoint options both gateway doors take (``gateway serve``, ``pgwire``)."""
    parser.add_argument("--checkpoint-key", help="sign audit checkpoints with this Ed25519 key")
    parser.add_argument("--checkpoint-dir", help="where signed checkpoints are published")
    parser.add_argument(
        "--checkpoint-every", type=float, default=300.0, help="seconds between checkpoints"
    )


def _checkpoints(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`_checkpoint_options`' values as the servers' keyword arguments."""
    return {
        "checkpoint_key": args.checkpoint_key,
        "checkpoint_dir": args.checkpoint_dir,
        "checkpoint_every": args.checkpoint_every,
    }


# --- `jupyter-gov gateway pgwire`: the PostgreSQL door alone (`gateway serve --pg-listen`
# --- serves it beside the Flight service, sharing sessions and audit).
def _pgwire_parser(commands: Any) -> None:
    gateway = commands.choices.get("gateway")  # the gateway's own parser, when it exists
    if gateway is None:
        gateway = commands.add_parser("gateway", help="governed front doors outside the kernel")
        gateway.add_subparsers(dest="gateway_command", required=True, metavar="ACTION")
    actions = next(a for a in gateway._actions if isinstance(a, argparse._SubParsersAction))
    pgwire = actions.add_parser("pgwire", help="serve the PostgreSQL wire protocol (psql, BI)")
    _config_options(pgwire)
    pgwire.add_argument("--listen", default="127.0.0.1:5433", help="HOST:PORT (0: any free)")
    pgwire.add_argument("--connection", help="default connection name from the policy")
    pgwire.add_argument("--tls-cert", help="PEM certificate (required off loopback)")
    pgwire.add_argument("--tls-key", help="PEM private key of --tls-cert")
    _checkpoint_options(pgwire)


def _pgwire(args: argparse.Namespace) -> int:
    from jupyter_gov.gateway.pgwire import serve

    serve(
        args.policy,
        args.listen,
        audit=args.store,
        connection=args.connection,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        **_checkpoints(args),
    )
    return EXIT_OK


# --- end pgwire block


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except GovError as error:
        print(f"jupyter-gov: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("jupyter-gov: interrupted.", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "gateway" and args.gateway_command == "pgwire":  # pgwire block
        return _pgwire(args)
    if args.command == "mcp":
        from jupyter_gov.mcp import open_tools, serve

        tools = open_tools(
            args.agent,
            policy=args.policy,
            store=args.store,
            user=args.user,
            connection=args.connection,
            alone=args.no_user,
        )
        serve(tools, "stdio" if args.transport == "stdio" else "http", args.host, args.port)
        return EXIT_OK
    if args.command in ("classify", "detokenize"):
        return _pii(args)
    if args.command == "gateway" and args.gateway_command == "serve":
        from jupyter_gov.gateway.server import serve

        serve(
            args.policy,
            args.listen,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            audit_store=args.store,
            env_file=args.env_file,
            pg_listen=args.pg_listen,
            max_sessions=args.max_sessions,
            idle_seconds=args.idle_timeout,
            **_checkpoints(args),
            announce=lambda line: print(line, flush=True),
        )
        return EXIT_OK
    if args.command in ("query", "explain"):
        return _run_query(args)
    if args.command == "tables":
        return _tables(args)
    if args.command == "config":
        settings = resolve(policy=args.policy, audit_store=args.store, connection=args.connection)
        described = settings.describe()
        if args.format == "json":
            print(json.dumps(described))
        for name, value in described.items() if args.format == "table" else ():
            print(f"{name:<16} {value}")
        return EXIT_OK
    if args.command == "whoami":
        session = _session(args)
        identity = session.identity
        print(json.dumps({**identity.audit_fields(), "roles": session.policy.roles_for(identity)}))
        return EXIT_OK
    if args.command == "login":
        from jupyter_gov.signin import login_in_terminal

        session = GovernedSession(args.policy, audit=args.store)
        identity = login_in_terminal(session.provider, session.audit, flow=args.flow)
        print(f"Signed in as {identity.display_name} ({identity.subject}, {identity.auth_method}).")
        return EXIT_OK
    if args.command == "logout":
        from jupyter_gov.identity.factory import logout

        session = GovernedSession(args.policy, audit=args.store)
        print("Signed out." if logout(session.provider) else "There was no sign-in to forget.")
        return EXIT_OK
    if args.command == "audit":
        return _audit(args)
    if args.command == "provenance":
        return _provenance(args)
    if args.command == "report":
        return _report(args)
    if args.command == "approvals":
        return _approvals(args)
    if args.command == "policy":
        return _policy(args)
    if args.command == "demo":
        from jupyter_gov.demo.runner import run_notebook

        return run_notebook(args.notebook, timeout=args.timeout)
    raise AssertionError(args.command)  # argparse guarantees a command


def _pii(args: argparse.Namespace) -> int:
    from jupyter_gov.pii import service

    session = GovernedSession(args.policy, args.user, audit=args.store)
    if args.command == "detokenize":
        text = args.text if args.text is not None else _read_stdin()
        print(service.detokenize(session, text), end="" if args.text is None else "\n")
        return EXIT_OK
    from jupyter_gov.pii.classify import classifications_block

    block = classifications_block(service.propose(session, args.connection))
    print(block)
    if args.write:
        Path(args.write).write_text(block + "\n", encoding="utf-8")
    return EXIT_OK


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"--param takes NAME=VALUE, not {pair!r}.")
        params[name] = value
    return params


def _read_stdin() -> str:
    """Standard input as UTF-8, or one sentence: bytes that are not text never reach a parser."""
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise GovError(
            f"Standard input is not UTF-8 text (an invalid byte at offset {error.start}); "
            "re-encode the SQL as UTF-8."
        ) from None


def _run_query(args: argparse.Namespace) -> int:
    sql = _read_stdin() if args.sql == "-" else args.sql
    session = _session(args)
    session.progress = progress.terminal
    try:
        return _run_in(session, sql, args)
    finally:
        session.close()  # a result shown in part is recorded with the rows it delivered


def _run_in(session: Any, sql: str, args: argparse.Namespace) -> int:
    params = _parse_params(args.param) or None
    unmask = [t for t in args.unmask.split(",") if t]
    if args.command == "explain":
        plan = session.explain(sql, params, connection=args.connection, unmask=unmask)
        if args.format == "json":
            print(json.dumps({**plan.to_dict(), "columns": [], "rows": [], "audit_id": None}))
        else:
            print(banner_text(plan, session.identity))
            if plan.rewritten_sql:
                print("\n" + plan.rewritten_sql)
        stopped = {"deny": QueryDenied, "approval_required": ApprovalRequired}.get(plan.decision)
        return stopped.exit_code if stopped is not None else EXIT_OK
    try:
        result = session.sql(
            sql,
            params,
            connection=args.connection,
            limit=args.limit,
            purpose=args.purpose,
            unmask=unmask,
        )
    except (QueryDenied, ApprovalRequired) as stopped:
        if args.format == "json":
            payload = {
                **stopped.plan.to_dict(),
                "columns": [],
                "rows": [],
                "audit_id": stopped.audit_id,
            }
            print(json.dumps(payload, default=str))
        else:
            print(banner_text(stopped.plan, session.identity), file=sys.stderr)
        return stopped.exit_code
    if args.format == "json":
        print(json.dumps(result.to_dict(), default=str))
    else:
        result.displaylimit = args.max_rows
        print(repr(result))
    return EXIT_OK


def _tables(args: argparse.Namespace) -> int:
    session = _session(args)
    rows = session.visible_columns(args.connection)
    if args.format == "json":
        print(json.dumps(rows))
        return EXIT_OK
    for row in rows:
        tags = ",".join(row["tags"]) or "-"
        print(f"{row['table']:<18} {row['column']:<16} {row['type']:<14} {tags:<12} {row['mask']}")
    return EXIT_OK


def _read_checkpoint(path: str) -> dict[str, Any]:
    """A checkpoint file as a JSON object, or one sentence saying why not."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as error:
        raise UsageError(f"The checkpoint file {path} cannot be read ({error.strerror}).") from None
    except ValueError:
        raise UsageError(f"The checkpoint file {path} is not JSON.") from None
    if not isinstance(data, dict) or not {"count", "last_id", "head"} <= data.keys():
        raise UsageError(f"{path} is not a checkpoint (count, last_id and head are needed).")
    return data


def _audit(args: argparse.Namespace) -> int:
    from jupyter_gov.audit import checkpoints

    if args.audit_command == "keygen":
        private, public = checkpoints.generate_key(args.file)
        print(f"signing key {private} (keep it from the database's holders); public key {public}")
        return EXIT_OK
    store = _audit_reader(args)
    if args.audit_command == "verify":
        checkpoint = _read_checkpoint(args.checkpoint) if args.checkpoint else None
        if args.public_key:
            if checkpoint is None:
                raise UsageError("--public-key checks a signed checkpoint; give --checkpoint too.")
            key = checkpoints.load_public_key(args.public_key)
            report = checkpoints.verify_against(store, checkpoint, key)
        elif checkpoint is not None and "signature" in checkpoint:
            raise UsageError(
                "The checkpoint is signed; give the signer's --public-key so its signature is "
                "checked (an unchecked signature proves nothing)."
            )
        else:
            report = store.verify(checkpoint)
        print(json.dumps(report.to_dict()) if args.format == "json" else str(report))
        return EXIT_OK if report.ok else EXIT_FAILED
    if args.audit_command == "checkpoint":
        if args.sign_key and not isinstance(store, AuditStore):
            raise UsageError(
                "Checkpoints of a gateway's audit are signed by the gateway "
                "(gateway serve --checkpoint-key); --sign-key signs a store read directly."
            )
        if args.sign_key:
            key = checkpoints.load_private_key(args.sign_key)
            print(json.dumps(checkpoints.sign_checkpoint(store, key)))
        else:
            print(json.dumps(store.checkpoint()))
        return EXIT_OK
    events = store.events(limit=args.n)
    if args.format == "json":
        print(json.dumps(events, default=str))
        return EXIT_OK
    for event in reversed(events):
        print(_event_line(event))
    return EXIT_OK


def _audit_reader(args: argparse.Namespace) -> Any:
    """The audit a command reads: the gateway's when one is configured (what the token's
    owner may read of it; docs/gateway.md), unless ``--store`` names a store outright."""
    from jupyter_gov.config import resolve_gateway

    found = None if args.store else resolve_gateway(getattr(args, "gateway", None))
    if found is None:
        return AuditStore(resolve_store(policy=args.policy, audit_store=args.store))
    from jupyter_gov.connectors.gateway import GatewaySession

    return GatewaySession(found).audit_reader


def _provenance(args: argparse.Namespace) -> int:
    from jupyter_gov.errors import ProvenanceMismatch
    from jupyter_gov.provenance import verify

    store = AuditStore(resolve_store(policy=args.policy, audit_store=args.store))
    report = verify(args.path, store)
    print(json.dumps(report.to_dict()) if args.format == "json" else report.summary())
    if not report.ok:
        raise ProvenanceMismatch(f"{args.path} does not match the audit: {report.problems[0]}.")
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from jupyter_gov.report import build_report, parse_since, render

    store = _audit_reader(args)
    checkpoints = []
    for name in args.checkpoint:
        try:
            with open(name) as handle:
                checkpoints.append(json.load(handle))
        except (OSError, ValueError):
            raise UsageError(f"The checkpoint {name} cannot be read as JSON.") from None
    report = build_report(store, since=parse_since(args.since), checkpoints=checkpoints)
    text = render(report, args.format)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _event_line(event: dict[str, Any]) -> str:
    import datetime as dt

    when = dt.datetime.fromtimestamp(event["ts"]).strftime("%Y-%m-%d %H:%M:%S")
    who = event.get("subject") or "?"
    what = event.get("decision") or ""
    rules = ",".join(event.get("rules") or [])
    rows = f" rows={int(event['rows'])}" if event.get("rows") is not None else ""
    statement = (event.get("statement") or "").replace("\n", " ")[:60]
    head = f"#{event['id']:<5} {when} {event['kind']:<9} {who:<10} {what:<17}"
    return f"{head} {rules}{rows} {statement}"


def _approvals(args: argparse.Namespace) -> int:
    """The approver's side, acting as the caller's own identity (in gateway mode: the
    token's owner, on the gateway's store)."""
    session = _session(args)
    store = session.approvals
    if args.action == "revoke" and not hasattr(store, "revoke"):
        raise UsageError("Revoking is not offered through the gateway; deny the request instead.")
    if args.action == "list":
        requests = store.list(args.state, limit=args.limit, offset=args.offset)
        if args.format == "json":
            print(json.dumps([r.to_dict() for r in requests], default=str))
        for request in requests if args.format == "table" else ():
            print(
                f"{request.id}  {request.state:<9} {request.requester_name:<12} "
                f"{request.connection:<10} {','.join(request.rules)}  {request.statement[:60]}"
            )
        return EXIT_OK
    if not args.id:
        raise UsageError(f"approvals {args.action} needs a request id.")
    identity = session.identity
    if args.action == "show":
        request = store.get(args.id)
    elif args.action == "approve":
        request = session.approve(args.id, args.comment)
    elif args.action == "deny":
        request = session.deny(args.id, args.comment)
    else:
        request = store.revoke(args.id, identity, args.comment)
    # What will run, with its values, only for someone who may decide it.
    approver = args.action == "show" and any(
        r.id == request.id for r in store.actionable_by(identity)
    )
    if args.format == "json":
        print(json.dumps(request.to_dict(approver=approver), default=str))
        return EXIT_OK
    print(
        f"request {request.id}: {request.state}"
        + (f" by {request.decided_by_name}" if request.decided_by_name else "")
    )
    if args.action == "show":
        print(_request_details(request, approver))
    return EXIT_OK


def _request_details(request: Any, approver: bool) -> str:
    """What an approver reads before deciding; others get the statement without literals."""
    rows = "unknown" if request.dry_run_rows is None else f"{request.dry_run_rows:,}"
    lines = [
        f"  requester:     {request.requester_name} ({request.binding.requester})",
        f"  connection:    {request.connection}",
        f"  rules:         {', '.join(request.rules)}",
        f"  justification: {request.justification}",
        f"  rows touched:  {rows} (dry run)",
        f"  row limit:     {request.row_limit if request.row_limit is not None else 'none'}",
    ]
    if request.unmask:
        lines.append(f"  unmask:        {', '.join(request.unmask)}")
    if approver and request.statement_text:
        lines.append(f"  statement:     {request.statement_text.strip()}")
        if request.params is not None:
            lines.append(f"  parameters:    {json.dumps(request.params, default=str)}")
    else:
        lines.append(f"  statement:     {request.statement}")
    return "\n".join(lines)


def _policy(args: argparse.Namespace) -> int:
    if args.policy_command == "check":
        policy = Policy.load(args.file)
        print(
            f"{args.file}: ok (policy {policy.name!r}, {len(policy.roles)} roles, "
            f"{len(policy.connections)} connections, hash {policy.short_hash})"
        )
        return EXIT_OK
    if args.policy_command == "schema":
        from jupyter_gov.policy.loader import schema

        print(json.dumps(schema(), indent=2))
        return EXIT_OK
    if args.file:
        print(json.dumps(Policy.load(args.file).summary, indent=2))
    else:
        from jupyter_gov.policy.loader import demo_policy_text

        print(demo_policy_text(), end="")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
