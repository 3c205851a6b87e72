"""Shared fixtures of the command tests."""

import pytest
import torch

from bargainnet.models.bargainnet import BargainNet, BargainNetConfig
from bargainnet.models.convert import save_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """A tiny random BargainNet weights file (ngf 4, 5 levels, 64 px), as a path string."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(BargainNet(BargainNetConfig(ngf=4, num_downs=5, code_dim=8)).eval(), path)
    return str(path)
