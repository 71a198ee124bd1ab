"""The point of gateway mode: the notebook's OS user can reach neither the credentials nor
the database, yet gets masked rows through ``%%gsql``.

Needs root (to run the gateway and the notebook as two other OS users) and a PostgreSQL
installation (a private cluster with password authentication, owned by the gateway user).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from typing import Any

import pytest

from tests.gateway.conftest import (
    NOTEBOOK_USER,
    Gateway,
    is_root,
    need,
    python_for,
)

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:response_mode='form_post'"),
]

NOTEBOOK = textwrap.dedent(
    """
    import json, os, sys
    env_file, private, port = sys.argv[1], sys.argv[2], sys.argv[3]
    out = {}
    try:
        open(env_file).read()
        out["credentials"] = "read"
    except OSError as error:
        out["credentials"] = type(error).__name__
    try:
        os.listdir(private)
        out["private_folder"] = "listed"
    except OSError as error:
        out["private_folder"] = type(error).__name__
    out["secrets_in_environment"] = sorted(
        k for k in os.environ if k in ("JUPYTER_GOV_MASK_KEY", "GW_PG_PASSWORD", "PGPASSWORD")
    )
    import adbc_driver_postgresql.dbapi as adbc
    out["direct"] = {}
    for role in ("gw_reader", "gw_owner", "postgres"):
        try:
            adbc.connect(f"postgresql://{role}@127.0.0.1:{port}/postgres").close()
            out["direct"][role] = "connected"
        except Exception as error:
            out["direct"][role] = type(error).__name__
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell()
    shell.extension_manager.load_extension("jupyter_gov")
    shell.run_cell_magic(
        "gsql", "warehouse -o rows --quiet",
        "SELECT customer_id, full_name, email FROM gateway_customers ORDER BY customer_id",
    )
    rows = shell.user_ns["rows"]
    out["emails"] = rows.arrow().column("email").to_pylist()
    out["masked"] = rows.masked_columns
    out["banner"] = rows.banner().splitlines()[0]
    out["relation"] = rows.relation.aggregate("count(*)").fetchall()[0][0]
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def notebook_as_another_user(gateway: Gateway, tmp_path_factory: Any) -> dict[str, Any]:
    """Run the notebook code above as ``jgov-notebook``; what it could and could not do."""
    need(
        is_root(),
        "the OS-user boundary needs root to run the gateway and the notebook as "
        "two other users (CI runs as root)",
    )
    need(gateway.pg is not None, "no PostgreSQL installation (initdb) for the private cluster")
    assert gateway.pg is not None
    home = gateway.base / "notebook-home"
    home.mkdir(mode=0o700)
    shutil.chown(home, NOTEBOOK_USER)
    script = gateway.base / "notebook.py"
    script.write_text(NOTEBOOK)
    script.chmod(0o644)
    python, pythonpath = python_for(NOTEBOOK_USER)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": pythonpath,
        "HOME": str(home),
        "IPYTHONDIR": str(home / ".ipython"),
        "JUPYTER_GOV_HOME": str(home / "gov"),
        "JUPYTER_GOV_GATEWAY": gateway.address,
        "JUPYTER_GOV_GATEWAY_CA": gateway.ca_file,
        "JUPYTER_GOV_GATEWAY_TOKEN": gateway.token("gw-alice"),
    }
    done = subprocess.run(
        [
            "runuser",
            "-u",
            NOTEBOOK_USER,
            "--",
            python,
            str(script),
            str(gateway.env_file),
            str(gateway.env_file.parent),
            str(gateway.pg.port),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_notebook_user_cannot_read_the_credentials_file(
    notebook_as_another_user: dict[str, Any],
) -> None:
    assert notebook_as_another_user["credentials"] == "PermissionError"
    assert notebook_as_another_user["private_folder"] == "PermissionError"
    assert notebook_as_another_user["secrets_in_environment"] == []


def test_the_notebook_user_cannot_connect_to_the_database_itself(
    notebook_as_another_user: dict[str, Any], gateway: Gateway
) -> None:
    assert "connected" not in notebook_as_another_user["direct"].values()
    # ...while the password the gateway holds does connect: the refusal is the password's
    import adbc_driver_postgresql.dbapi as adbc

    assert gateway.pg is not None
    adbc.connect(gateway.pg.url(gateway.pg.reader_password)).close()


def test_the_notebook_user_gets_masked_rows_through_gsql(
    notebook_as_another_user: dict[str, Any],
) -> None:
    result = notebook_as_another_user
    assert result["masked"] == {"email": "email"}
    assert result["emails"] == ["***@navy.example", "***@bletchley.example"]
    assert result["banner"].startswith("✔ allowed · Alice (analyst; msal) · on warehouse")
    assert result["relation"] == 2
