"""The live engines loaded in this test session, shared by every copy of the conftest.

pytest imports ``tests/connectors/conftest.py`` as ``connectors.conftest`` (``tests`` has no
``__init__.py``) while other folders' conftests import it as ``tests.connectors.conftest``:
two modules. A registry in either would load each engine twice, and a second load of Spark
overwrote the tables under the first connector, whose cached file listing then read nothing.
This module is always imported by the one name, so there is one registry.
"""

from __future__ import annotations

from typing import Any

#: Engines loaded in this test session (or why one could not be), by name.
LOADED: dict[str, Any] = {}
