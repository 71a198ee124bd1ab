"""Fixtures for the PII tests: the labelled corpus (built once), and auto-classifying policies."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from jupyter_gov.policy import Policy
from tests.adversarial.conftest import pytest_collection_modifyitems  # noqa: F401 (stress)
from tests.connectors.conftest import engine, live_engines, reference  # noqa: F401 (fixtures)
from tests.pii.corpus import Corpus, generate

#: Snippets in the labelled corpus (issue 11 asks for at least 10,000; it takes ~2 s).
CORPUS_SIZE = 10_000
#: Demo tags no pattern can find (names, street addresses, birth dates without a
#: keyword): they stay classified by hand in the auto policies below (docs/pii.md).
UNDETECTABLE_TAGS = ("person_name", "address", "birth_date")


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return generate(CORPUS_SIZE)


@pytest.fixture(scope="session")
def scanned(corpus: Corpus) -> Any:
    from jupyter_gov.pii.detect import scan_array

    return scan_array(pa.array(corpus.texts, pa.string()))


def auto_policy(demo_policy: Policy, **extra: Any) -> Policy:
    """The demo policy with ``unclassified: auto`` and only the undetectable tags pinned."""
    data = dict(demo_policy.data)
    data["unclassified"] = "auto"
    data["classifications"] = {
        tag: patterns
        for tag, patterns in data["classifications"].items()
        if tag in UNDETECTABLE_TAGS
    }
    data.update(extra)
    return Policy(data)


@pytest.fixture(scope="session")
def demo_auto_policy(demo_policy: Policy) -> Policy:
    return auto_policy(demo_policy)
