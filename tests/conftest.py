"""Shared test helpers: paths to the fixtures and tiny deterministic inputs.

Some tests need the research data beside the repository (``../shared``: the published model's
parity fixture, the Lalonde–Efros photos), which a plain clone does not have. They are marked
with :func:`needs_shared` (or call :func:`require_shared` from a fixture) and skip, saying why,
when it is absent — except in CI (environment variable ``CI=true``), where a missing file is a
failure, so that the parity checks cannot silently stop running there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Small fixtures kept in the repository.
FIXTURES = REPO / "tests" / "fixtures"
#: The research data beside the repository (absent in a plain clone).
SHARED = REPO.parent / "shared"
SHARED_FIXTURES = SHARED / "fixtures"
LALONDE = SHARED / "data" / "lalonde-efros-2007"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_shared(path: Path) -> None:
    """Skip the running test (fail it in CI) when ``path`` from ``../shared`` is missing."""
    if not Path(path).exists():
        reason = f"needs the research data {path} (../shared), not on this machine"
        if _in_ci():
            pytest.fail(f"CI must run with ../shared: {reason}", pytrace=False)
        pytest.skip(reason)


def needs_shared(path: Path):
    """Mark a test that reads ``path`` from ``../shared`` (see :func:`require_shared`)."""
    return pytest.mark.shared_data(path)


def pytest_configure(config):
    config.addinivalue_line("markers", "shared_data(path): needs this file or folder from ../shared")


def pytest_runtest_setup(item):
    for marker in item.iter_markers("shared_data"):
        require_shared(marker.args[0])


@pytest.fixture(autouse=True)
def _seed_everything():
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    yield
