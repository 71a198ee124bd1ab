"""Standard PostgreSQL clients (the psql binary, psycopg) governed through the pgwire door.

One server process is shared by the module (tests/pgwire/conftest.py); every test reads
the audit store that process writes, as an auditor would.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import uuid

import psycopg
import pytest

from jupyter_gov.audit import AuditStore
from jupyter_gov.errors import UsageError
from jupyter_gov.gateway.pgwire import PgWireServer, bind_dollar_parameters
from tests.pgwire.conftest import TOKENS, PgWire

MASKED = "SELECT customer_id, email, ssn FROM customers ORDER BY customer_id LIMIT 3"


def run_psql(psql: str, server: PgWire, token: str, *commands: str) -> subprocess.CompletedProcess:
    """``psql`` with the token as its password (PGPASSWORD), as a user would type it."""
    args = [psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"]
    args += ["-h", server.host, "-p", str(server.port), "-U", "someone", "-d", "governed"]
    for command in commands:
        args += ["-c", command]
    env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)


def newest(server: PgWire, **filters) -> dict:
    return AuditStore(server.store).events(limit=1, **filters)[0]


# -- psql --------------------------------------------------------------------------------


def test_psql_gets_masked_rows_for_an_analyst_token(psql, pgwire):
    done = run_psql(psql, pgwire, TOKENS["etl"], MASKED)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|") for line in done.stdout.split()]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert all(r[1].startswith("***@") for r in rows)  # email masked
    assert all(r[2].startswith("*******") and r[2][-4:].isdigit() for r in rows)  # last 4


def test_psql_drop_is_denied_with_the_policy_sentence_and_sqlstate_42501(psql, pgwire):
    done = run_psql(psql, pgwire, TOKENS["writer"], "DROP TABLE customers")
    assert done.returncode != 0
    assert "ERROR:  42501: DROP statements are not allowed" in done.stderr
    assert newest(pgwire, kinds=["decision"])["decision"] == "deny"


def test_psql_with_a_bad_token_is_refused_and_the_refusal_is_audited(psql, pgwire):
    before = AuditStore(pgwire.store).count()
    done = run_psql(psql, pgwire, "not-a-token-" + uuid.uuid4().hex, "SELECT 1")
    assert done.returncode == 2
    assert "FATAL:  " in done.stderr
    assert "not a token this gateway accepts" in done.stderr
    event = newest(pgwire)
    assert AuditStore(pgwire.store).count() == before + 1
    assert (event["decision"], event["rules"], event["subject"]) == ("deny", ["identity"], None)
    assert "not-a-token" not in str(event)  # the token itself is never recorded


# -- psycopg (extended protocol, bound parameters) ----------------------------------------


def test_psycopg_reads_masked_rows_with_bound_parameters_and_typed_columns(pgwire):
    with psycopg.connect(pgwire.dsn(TOKENS["etl"])) as conn:
        cursor = conn.execute(
            "SELECT customer_id, email FROM customers WHERE customer_id <= %s ORDER BY 1", (2,)
        )
        assert [c.type_code for c in cursor.description] == [23, 25]  # int4, text
        rows = cursor.fetchall()
    assert [r[0] for r in rows] == [1, 2]
    assert all(r[1].startswith("***@") for r in rows)


def test_a_result_larger_than_one_write_arrives_whole_and_masked(pgwire):
    sql = "SELECT customer_id, email FROM customers ORDER BY customer_id LIMIT 5000"
    with psycopg.connect(pgwire.dsn(TOKENS["etl"])) as conn:
        rows = conn.execute(sql).fetchall()
    assert [r[0] for r in rows] == list(range(1, 5001))
    assert all(r[1].startswith("***@") for r in rows)


def test_psycopg_drop_raises_insufficient_privilege(pgwire):
    with (
        psycopg.connect(pgwire.dsn(TOKENS["writer"]), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege) as raised,
    ):
        conn.execute("DROP TABLE customers")
    assert raised.value.diag.sqlstate == "42501"
    assert raised.value.diag.message_primary.startswith("DROP statements are not allowed")


def test_psycopg_with_a_bad_token_cannot_connect(pgwire):
    with pytest.raises(psycopg.OperationalError, match="not a token this gateway accepts"):
        psycopg.connect(pgwire.dsn("wrong-token"))


def test_a_bad_token_answers_fatal_sqlstate_28p01_invalid_password(pgwire):
    import pg8000.native  # shows the error fields libpq-based clients fold into a message

    with pytest.raises(pg8000.native.DatabaseError) as raised:
        pg8000.native.Connection(
            "alice", password="wrong-token", host=pgwire.host, port=pgwire.port, timeout=10
        )
    fields = raised.value.args[0]
    assert (fields["S"], fields["C"]) == ("FATAL", "28P01")


def test_the_user_name_is_not_an_identity_the_token_is(pgwire):
    # "alice" is an admin in the policy's local users; the etl token is an analyst.
    with psycopg.connect(pgwire.dsn(TOKENS["etl"], user="alice"), autocommit=True) as conn:
        email = conn.execute("SELECT email FROM customers WHERE customer_id = 1").fetchone()[0]
    assert email.startswith("***@")
    event = newest(pgwire, kinds=["result"])
    assert (event["subject"], event["auth_method"]) == ("etl", "service-token")


def test_a_service_token_may_name_its_service_as_the_flight_gateway_expects(pgwire):
    with psycopg.connect(pgwire.dsn(f"service:etl:{TOKENS['etl']}"), autocommit=True) as conn:
        assert conn.execute("SELECT 1 AS one").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="Service 'ops' could not sign in"):
        psycopg.connect(pgwire.dsn(f"service:ops:{TOKENS['etl']}"))  # another service's token


def test_audit_records_the_token_identity_auth_method_and_purpose(pgwire):
    with psycopg.connect(pgwire.dsn(TOKENS["etl"]), autocommit=True) as conn:
        conn.execute("SET jupyter_gov.purpose = 'quarterly churn report'")
        conn.execute("SELECT count(*) FROM orders").fetchone()
    event = newest(pgwire, kinds=["result"])
    assert event["subject"] == "etl"
    assert event["auth_method"] == "service-token"
    assert event["identity_kind"] == "service" and event["verified"]
    assert event["purpose"] == "quarterly churn report"
    assert event["roles"] == ["analyst"]


def test_parameter_values_are_bound_never_pasted_into_the_statement(pgwire):
    hostile = "x' OR '1'='1"
    with psycopg.connect(pgwire.dsn(TOKENS["etl"]), autocommit=True) as conn:
        rows = conn.execute("SELECT customer_id FROM customers WHERE email = %s", (hostile,))
        assert rows.fetchall() == []
    event = newest(pgwire, kinds=["result"])
    assert hostile not in str(event)
    assert event["statement"].endswith("WHERE email = $pg_1")  # a placeholder, bound


def test_prepared_statements_reused_by_the_driver_stay_governed(pgwire):
    # psycopg prepares a statement server-side after its fifth run and frees it on rollback.
    with psycopg.connect(pgwire.dsn(TOKENS["etl"])) as conn:
        emails = [
            conn.execute("SELECT email FROM customers WHERE customer_id = %s", (n,)).fetchone()[0]
            for n in range(1, 9)
        ]
        conn.rollback()
        assert conn.execute("SELECT 1 AS one").fetchone() == (1,)
    assert all(e.startswith("***@") for e in emails)


def test_an_error_inside_a_transaction_block_needs_rollback_like_postgresql(pgwire):
    with psycopg.connect(pgwire.dsn(TOKENS["etl"])) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM orders WHERE order_id = 1")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 2 AS two").fetchone() == (2,)


def test_an_unknown_gateway_setting_is_refused(pgwire):
    with (
        psycopg.connect(pgwire.dsn(TOKENS["etl"]), autocommit=True) as conn,
        pytest.raises(psycopg.errors.UndefinedObject, match="not a setting"),
    ):
        conn.execute("SET jupyter_gov.user = 'alice'")


def test_the_gateway_publishes_a_signed_checkpoint_that_verifies_its_store(pgwire):
    from jupyter_gov.audit.checkpoints import load_public_key, verify_against

    folder = pgwire.home / "checkpoints"
    checkpoint = json.loads((folder / "latest.json").read_text())
    public_key = load_public_key(folder / "public-key.pem")
    report = verify_against(AuditStore(pgwire.store), checkpoint, public_key)
    assert report.ok, report


def test_psql_catalog_commands_get_the_governed_refusal_not_the_catalog(psql, pgwire):
    done = run_psql(psql, pgwire, TOKENS["etl"], "\\dt")
    assert done.returncode != 0
    assert "part of the database's own catalog" in done.stderr


def test_concurrent_clients_are_each_governed_and_audited_once(pgwire):
    from concurrent.futures import ThreadPoolExecutor

    store = AuditStore(pgwire.store)
    before = store.count(kinds=["result"])

    def client(n: int) -> list[str]:
        with psycopg.connect(pgwire.dsn(TOKENS["etl"]), autocommit=True) as conn:
            sql = "SELECT email FROM customers WHERE customer_id = %s"
            return [conn.execute(sql, (n * 10 + i,)).fetchone()[0] for i in range(1, 6)]

    with ThreadPoolExecutor(4) as pool:
        emails = [e for batch in pool.map(client, range(4)) for e in batch]
    assert len(emails) == 20 and all(e.startswith("***@") for e in emails)
    assert store.count(kinds=["result"]) == before + 20
    assert store.verify().ok


def test_malformed_clients_are_dropped_and_the_door_stays_up(pgwire):
    import socket

    for garbage in (
        b"\x00\x00\x00\x08\x00\x00\x00\x00",  # protocol version 0
        b"\xff\xff\xff\xff",  # a negative length
        struct.pack("!ii", 8, 196608) + b"Q" + struct.pack("!i", 2**31 - 1),  # huge message
    ):
        with socket.create_connection((pgwire.host, pgwire.port), timeout=10) as raw:
            raw.sendall(garbage)
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(4096):  # the server answers (or not) and closes
                pass
    with psycopg.connect(pgwire.dsn(TOKENS["etl"])) as conn:
        assert conn.execute("SELECT 1 AS one").fetchone() == (1,)


def test_a_cancel_request_stops_the_running_statement_which_is_audited(pgwire):
    import threading

    endless = (
        "SELECT count(*) AS cancel_me FROM customers a, customers b, customers c "
        "WHERE a.customer_id + b.customer_id + c.customer_id = -1"
    )
    outcome: list[BaseException] = []
    with psycopg.connect(pgwire.dsn(TOKENS["etl"]), autocommit=True) as conn:

        def run() -> None:
            try:
                conn.execute(endless)
            except psycopg.Error as error:
                outcome.append(error)

        worker = threading.Thread(target=run)
        worker.start()
        for _ in range(300):  # a guard, never a wait for something: cancel until it stops
            worker.join(0.2)
            if not worker.is_alive():
                break
            conn.cancel_safe()
        assert isinstance(outcome[0], psycopg.errors.QueryCanceled)
        assert conn.execute("SELECT 1 AS one").fetchone() == (1,)  # the session goes on
    cancelled = AuditStore(pgwire.store).events(kinds=["result"], text="cancel_me", limit=1)[0]
    assert cancelled["error"] == "The query was cancelled."


class RawClient:
    """Just enough of a PostgreSQL client to send messages drivers rarely use."""

    def __init__(self, server: PgWire, token: str) -> None:
        import socket

        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        params = b"user\x00anyone\x00database\x00governed\x00\x00"
        self.sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        assert self.receive()[0] == (b"R", struct.pack("!i", 3))  # cleartext password
        self.send(b"p", token.encode() + b"\x00")
        self.until(b"Z")

    def send(self, kind: bytes, body: bytes = b"") -> None:
        self.sock.sendall(kind + struct.pack("!i", len(body) + 4) + body)

    def receive(self) -> list[tuple[bytes, bytes]]:
        head = self._exactly(5)
        (size,) = struct.unpack("!i", head[1:])
        return [(head[:1], self._exactly(size - 4))]

    def until(self, kind: bytes) -> list[bytes]:
        kinds: list[bytes] = []
        while not kinds or kinds[-1] != kind:
            kinds.append(self.receive()[0][0])
        return kinds

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
        return data


def test_execute_with_a_row_limit_suspends_the_portal_and_resumes_it(pgwire):
    client = RawClient(pgwire, TOKENS["etl"])
    sql = b"SELECT customer_id FROM customers WHERE customer_id <= $1 ORDER BY 1\x00"
    client.send(b"P", b"\x00" + sql + struct.pack("!hi", 1, 23))
    client.send(b"B", b"\x00\x00" + struct.pack("!hhi", 0, 1, 1) + b"5" + struct.pack("!h", 0))
    client.send(b"D", b"P\x00")
    client.send(b"E", b"\x00" + struct.pack("!i", 2))
    client.send(b"E", b"\x00" + struct.pack("!i", 2))
    client.send(b"E", b"\x00" + struct.pack("!i", 0))
    client.send(b"S")
    kinds = client.until(b"Z")
    assert kinds == [b"1", b"2", b"T", b"D", b"D", b"s", b"D", b"D", b"s", b"D", b"C", b"Z"]
    client.sock.close()


# -- pieces ---------------------------------------------------------------------------------


def test_dollar_parameters_are_renamed_outside_literals_identifiers_and_comments():
    sql = """SELECT $1, '$2', "a$3", $$ $4 $$, $t$ $5 $t$, x$6 -- $7
    /* $8 /* $9 */ */ FROM t WHERE a = $2::int"""
    text, highest = bind_dollar_parameters(sql)
    assert highest == 2
    assert text.startswith("SELECT :pg_1, '$2', \"a$3\", $$ $4 $$, $t$ $5 $t$, x$6 -- $7")
    assert text.endswith("WHERE a = :pg_2::int")


def test_listening_off_loopback_without_tls_is_refused():
    with pytest.raises(UsageError, match="without TLS"):
        PgWireServer(None, host="0.0.0.0", audit="sqlite:///:memory:")
