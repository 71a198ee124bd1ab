"""The gateway's credentials file: owner-only, NAME=VALUE, values never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_gov.errors import UsageError
from jupyter_gov.gateway.server import load_env_file


def test_a_credentials_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.env"
    path.write_text("DB_PASSWORD=hunter2-secret\n")
    path.chmod(0o640)
    environ: dict[str, str] = {}
    with pytest.raises(UsageError, match="readable by others; chmod 600") as caught:
        load_env_file(path, environ)
    assert environ == {} and "hunter2" not in str(caught.value)


def test_an_owner_only_file_sets_its_names(tmp_path: Path) -> None:
    path = tmp_path / "gateway.env"
    path.write_text("# secrets\nDB_PASSWORD='hunter2-secret'\nexport MASK=abc\n")
    path.chmod(0o600)
    environ: dict[str, str] = {}
    assert load_env_file(path, environ) == ["DB_PASSWORD", "MASK"]
    assert environ == {"DB_PASSWORD": "hunter2-secret", "MASK": "abc"}


def test_a_malformed_line_is_named_by_number_not_by_content(tmp_path: Path) -> None:
    path = tmp_path / "gateway.env"
    path.write_text("OK=1\nhunter2-secret\n")
    path.chmod(0o600)
    with pytest.raises(UsageError, match=r"^Line 2 of .* is not NAME=VALUE\.$") as caught:
        load_env_file(path, {})
    assert "hunter2" not in str(caught.value)
