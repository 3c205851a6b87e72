"""Shared test helpers: paths to the shared fixtures and tiny deterministic inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
LALONDE = SHARED / "data" / "lalonde-efros-2007"


@pytest.fixture(autouse=True)
def _seed_everything():
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    yield
