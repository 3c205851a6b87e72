"""The served app through its HTTP API (gradio_client), and the ``bargainnet serve`` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from bargainnet import io as bio
from bargainnet.cli import main

from .conftest import EXAMPLES, REPO, free_port, read_mask, read_rgb

NAMES = ("cafeteria_person", "meadow_squirrel", "shelf_item")


@pytest.fixture(scope="module")
def client(server):
    gradio_client = pytest.importorskip("gradio_client")
    # a generous read timeout: a loaded 2-core machine may take tens of seconds per request
    return gradio_client.Client(server, verbose=False, httpx_kwargs={"timeout": 300})


def _files(name):
    from gradio_client import handle_file

    return handle_file(str(EXAMPLES / f"{name}.jpg")), handle_file(str(EXAMPLES / f"{name}_mask.png"))


def test_four_parallel_requests_get_their_own_correct_results(client, tiny_harmonizer, tmp_path):
    flipped = tmp_path / "flipped.png"
    Image.open(EXAMPLES / "meadow_squirrel.jpg").transpose(Image.FLIP_LEFT_RIGHT).save(flipped)
    flipped_mask = tmp_path / "flipped_mask.png"
    Image.open(EXAMPLES / "meadow_squirrel_mask.png").transpose(Image.FLIP_LEFT_RIGHT).save(flipped_mask)
    pairs = [(EXAMPLES / f"{n}.jpg", EXAMPLES / f"{n}_mask.png") for n in NAMES] + [(flipped, flipped_mask)]
    from gradio_client import handle_file

    jobs = [client.submit(handle_file(str(c)), handle_file(str(m)), False, False, api_name="/harmonize") for c, m in pairs]
    results = [job.result(timeout=120) for job in jobs]
    for (composite, mask), (png, info) in zip(pairs, results, strict=True):
        expected = np.asarray(tiny_harmonizer(str(composite), str(mask)))
        got = read_rgb(png)
        np.testing.assert_array_equal(got, expected)
        original, inside = bio.load_image(str(composite)).rgb8, read_mask(mask)
        np.testing.assert_array_equal(got[~inside], original[~inside])
        assert info["name"] == composite.name and info["width"] == original.shape[1]


def test_bad_input_is_a_clear_error_and_the_server_keeps_going(client, tmp_path):
    from gradio_client import handle_file

    empty = tmp_path / "empty.png"
    Image.new("L", (640, 512), 0).save(empty)
    with pytest.raises(Exception, match="mask is empty") as err:
        client.predict(handle_file(str(EXAMPLES / "meadow_squirrel.jpg")), handle_file(str(empty)), False, False,
                       api_name="/harmonize")
    assert "Traceback" not in str(err.value)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(Exception, match="junk.jpg"):
        client.predict(handle_file(str(junk)), handle_file(str(empty)), False, False, api_name="/harmonize")
    png, info = client.predict(*_files("shelf_item"), True, False, api_name="/harmonize")
    assert info["target"] == "background" and read_rgb(png).shape == (480, 640, 3)
    png, _ = client.predict(*_files("shelf_item"), False, False, 0, api_name="/harmonize")  # strength 0
    np.testing.assert_array_equal(read_rgb(png), bio.load_image(str(EXAMPLES / "shelf_item.jpg")).rgb8)
    with pytest.raises(Exception, match="strength must be a number from 0 to 2"):
        client.predict(*_files("shelf_item"), False, False, 3, api_name="/harmonize")


def test_paste_through_the_api(client, tiny_harmonizer, tmp_path):
    from gradio_client import handle_file

    rgba = np.zeros((50, 40, 4), np.uint8)
    rgba[..., 1] = 220
    rgba[10:40, 5:35, 3] = 255
    cutout = tmp_path / "leaf.png"
    Image.fromarray(rgba).save(cutout)
    background = EXAMPLES / "shelf_item.jpg"
    png, info = client.predict(handle_file(str(cutout)), handle_file(str(background)), 100, 60, 1.5, api_name="/paste")
    expected = tiny_harmonizer.paste(str(cutout), str(background), position=(100, 60), scale=1.5)
    np.testing.assert_array_equal(read_rgb(png), np.asarray(expected.image))
    png, info = client.predict(handle_file(str(cutout)), handle_file(str(background)), None, None, 1.0, api_name="/paste")
    assert info["name"] == "leaf_on_shelf_item.jpg"


def test_serve_command_starts_serves_and_stops_on_ctrl_c(tiny_weights):
    pytest.importorskip("gradio")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bargainnet.cli", "serve", "--port", str(port), "--weights", str(tiny_weights)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"bargainnet serve: http://127.0.0.1:{port}/ (Ctrl-C to stop)"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "stopped" in err and "Traceback" not in err


def test_serve_without_gradio_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert main(["serve"]) == 3
    err = capsys.readouterr().err
    assert err.strip() == 'bargainnet serve: error: the web app needs gradio: pip install "bargainnet[web]"'


def test_serve_on_a_taken_port_is_a_clear_error(tiny_weights, capsys):
    pytest.importorskip("gradio")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        start = time.monotonic()
        code = main(["serve", "--port", str(port), "--weights", str(tiny_weights)])
    assert code == 3 and time.monotonic() - start < 120
    assert "choose another --port" in capsys.readouterr().err
