"""A governed Spark read whose table files changed under the session fails closed.

Spark caches a table's file listing per session: when another session overwrites or drops
the table, the governed session's next read finds the listed files gone. It must end in a
one-sentence error (no warehouse path, no rows), audited as failed, and the next run must
read the table as it is now.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_gov.connectors import registry
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import QueryFailed
from tests.connectors.conftest import Engine, _connection

pytestmark = pytest.mark.server

TABLE = "default.vanishing"
QUERY = "SELECT id, v FROM vanishing ORDER BY id"


def _write(raw_spark: Any, rows: int, value: str) -> None:
    """(Re)write the table from a session other than the governed one, as a second load does."""
    frame = raw_spark.sql(f"SELECT id, '{value}' AS v FROM range(0, {rows}, 1, 4)")
    raw_spark.createDataFrame(frame.toArrow()).write.mode("overwrite").saveAsTable(TABLE)


@pytest.fixture
def governed(spark: Engine, raw_spark: Any) -> Iterator[GovernedSession]:
    """A governed session with a connector of its own, which has read the table once."""
    _write(raw_spark, 1000, "first")
    connector = registry.profiles()["spark"].open(_connection(spark.url))
    session = GovernedSession(spark.policy(), "alice")
    session.use_connector("demo", connector)
    assert session.sql(QUERY).to_arrow_table().num_rows == 1000  # lists the files
    yield session
    connector.close()
    raw_spark.sql(f"DROP TABLE IF EXISTS {TABLE}")


def test_read_of_files_replaced_under_the_session_fails_closed_in_one_sentence(
    governed: GovernedSession, raw_spark: Any
) -> None:
    _write(raw_spark, 10, "second")
    with pytest.raises(QueryFailed) as error:
        governed.sql(QUERY).to_arrow_table()
    message = str(error.value)
    assert message.startswith("Spark could not read the files of a table this statement reads")
    assert "FAILED_READ_FILE" in message and "run the statement again" in message
    assert "/" not in message and "part-" not in message and "\n" not in message


def test_read_of_files_replaced_under_the_session_is_audited_as_failed(
    governed: GovernedSession, raw_spark: Any
) -> None:
    _write(raw_spark, 10, "second")
    with pytest.raises(QueryFailed):
        governed.sql(QUERY).to_arrow_table()
    last = governed.audit.events()[0]
    assert last["kind"] == "result" and last["error"].startswith("Spark could not read")
    assert last["decision"] == "error" and not last["rows"]


def test_statement_run_again_after_files_were_replaced_reads_the_table_as_it_is_now(
    governed: GovernedSession, raw_spark: Any
) -> None:
    _write(raw_spark, 10, "second")
    with pytest.raises(QueryFailed):
        governed.sql(QUERY).to_arrow_table()
    again = governed.sql(QUERY).to_arrow_table()
    assert again.num_rows == 10 and set(again.column("v").to_pylist()) == {"second"}
