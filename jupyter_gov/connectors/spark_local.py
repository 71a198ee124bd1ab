"""A local Spark Connect server from the pyspark wheel, for the tests and the benchmarks.

The wheel's own ``SparkConnectServer`` is started with ``spark-submit`` from the wheel's
jars (nothing is downloaded), ``local[2]``, bound to loopback on a free port, with its
warehouse and temporary files in a folder of the caller's. Readiness is polled (the port
answers, or the process has died); the server is stopped when the ``with`` block ends.
Why here: the test suite and ``bench/spark_tpch.py`` start the same server; one start-up
keeps their settings from drifting apart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

#: How long the JVM may take to start serving (it takes 10-25 s on two busy cores).
START_TIMEOUT_S = 180


class ServerFailed(Exception):
    """The local server exited or did not answer; the message ends with its log's tail."""


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def missing() -> str | None:
    """Why a local Spark Connect server cannot be started here, or None."""
    if shutil.which("java") is None:
        return "Spark needs a Java runtime (java is not on PATH)"
    try:
        import grpc  # noqa: F401
        import pyspark
        from pyspark.sql.connect.session import SparkSession  # noqa: F401
    except ImportError as error:
        return f"Spark needs pyspark[connect] ({error.name} is missing)"
    if not (Path(pyspark.__file__).parent / "bin" / "spark-submit").exists():
        return "the pyspark wheel has no bin/spark-submit"
    return None


@contextmanager
def local_server(
    work: Path,
    *,
    name: str,
    conf: Mapping[str, str] | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> Iterator[str]:
    """``sc://127.0.0.1:PORT`` of a server running until the block ends.

    ``conf`` adds or overrides Spark settings (``spark.ui.port``, shuffle partitions,
    driver memory); the web UI is off unless it turns it on.
    Raises :class:`ServerFailed` when the server exits or does not answer in time.
    """
    import pyspark

    home = Path(pyspark.__file__).parent
    extra = dict(conf or {})
    port = free_port()
    while str(port) == extra.get("spark.ui.port"):  # the OS may hand out a port again
        port = free_port()
    settings = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.sql.warehouse.dir": str(work / "warehouse"),
        "spark.sql.catalogImplementation": "in-memory",
        "spark.driver.extraJavaOptions": f"-Djava.io.tmpdir={work}",
        **extra,
    }
    command = [str(home / "bin" / "spark-submit"), "--master", "local[2]"]
    command += ["--class", "org.apache.spark.sql.connect.service.SparkConnectServer"]
    for key, value in settings.items():
        command += ["--conf", f"{key}={value}"]
    command += ["--name", name, "spark-internal"]
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("SPARK_REMOTE", None)
    env.pop("SPARK_CONNECT_AUTHENTICATE_TOKEN", None)
    log_path = work / "server.log"
    log = log_path.open("wb")
    server = subprocess.Popen(
        command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        for _ in range(int(timeout_s * 5)):
            if _answers(port):
                break
            try:
                server.wait(timeout=0.2)  # the poll interval; returns at once if it died
            except subprocess.TimeoutExpired:
                continue
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ServerFailed(f"the Spark Connect server exited ({server.returncode}):\n{tail}")
        else:
            raise ServerFailed(f"the Spark Connect server did not answer on port {port}")
        yield f"sc://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
