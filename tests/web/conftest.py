"""Fixtures of the web app's tests: a tiny random model, the app, and a live server."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

EXAMPLES = REPO / "examples"
TINY = dict(ngf=4, num_downs=5, code_dim=8)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    from bargainnet.models.bargainnet import BargainNet, BargainNetConfig
    from bargainnet.models.convert import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("web_weights") / "tiny.safetensors"
    save_weights(BargainNet(BargainNetConfig(**TINY)).eval(), path, trained_on="nothing (random init)")
    return path


@pytest.fixture(scope="session")
def tiny_harmonizer(tiny_weights):
    from bargainnet.inference import Harmonizer

    return Harmonizer.from_pretrained(tiny_weights)


@pytest.fixture
def app(tiny_harmonizer, tiny_weights, tmp_path):
    from bargainnet.web.app import WebApp

    web = WebApp(tiny_harmonizer, weights=tiny_weights, workdir=tmp_path / "work", examples=EXAMPLES)
    yield web
    web.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_harmonizer, tiny_weights, tmp_path_factory):
    """The app served on a free port of 127.0.0.1 (in this process); yields its URL."""
    pytest.importorskip("gradio")
    from bargainnet.web.app import WebApp, launch

    app = WebApp(tiny_harmonizer, weights=tiny_weights, workdir=tmp_path_factory.mktemp("web_server"), examples=EXAMPLES)
    demo = launch(app, host="127.0.0.1", port=free_port(), concurrency=2)
    try:
        yield demo.local_url
    finally:
        demo.close()
        app.close()


def read_rgb(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def read_mask(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) >= 128
