"""The live engines loaded in this test session, shared by every copy of the conftest.

pytest imports ``tests/connectors/conftest.py`` as ``connectors.conftest`` (``tests`` has no
``__init__.py``) while other folders' conftests import it as ``tests.connectors.conftest``:
two modules. A registry in either would load each engine twice, and a second load of Spark
overwrote the tables under the first connector, whose cached file listing then read nothing.
This module is always imported by the one name, so there is one registry.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

#: Engines loaded in this test session (or why one could not be), by name.
LOADED: dict[str, Any] = {}

#: This run's suffix of the schemas it loads on the shared servers (PostgreSQL, MariaDB):
#: two suites running at once on one machine then never drop or fill each other's. Here,
#: not in the conftest, so both of the conftest's names see the same one.
RUN = f"{os.getpid()}_{secrets.token_hex(3)}"
