"""End to end in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``)
drives the served page with selenium. Skipped locally when the browser is missing
(``pytest -m "not browser"`` skips it on purpose); under CI=true a missing browser fails."""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bargainnet import io as bio

from .conftest import EXAMPLES, free_port, read_mask

pytestmark = pytest.mark.browser

COMPOSITE = EXAMPLES / "meadow_squirrel.jpg"
MASK = EXAMPLES / "meadow_squirrel_mask.png"
WAIT_S = 30


def _missing(what: str):
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{what}; CI must run the browser test (.ci/run installs chromium and chromium-driver)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing('selenium is not installed (pip install "bargainnet[test]")')
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        _missing("Chromium or its driver is not installed (apt-get install -y chromium chromium-driver)")
    os.environ["SE_OFFLINE"] = "true"  # selenium must use the system browser, never download one
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1500"):
        options.add_argument(arg)
    drv = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    """The app with the default model, on a free port of 127.0.0.1."""
    pytest.importorskip("gradio")
    from bargainnet.inference import Harmonizer
    from bargainnet.web.app import WebApp, launch

    app = WebApp(Harmonizer.from_pretrained(), workdir=tmp_path_factory.mktemp("web_browser"), examples=EXAMPLES)
    demo = launch(app, host="127.0.0.1", port=free_port())
    try:
        yield demo.local_url
    finally:
        demo.close()
        app.close()


def _upload(browser, elem_id: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path.resolve()))


def _click_harmonize(browser) -> None:
    """Click the Harmonize button once the page shows it enabled: under load the page may still be
    re-rendering after an upload, when the button is briefly missing or replaced."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT_S, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        ec.element_to_be_clickable((By.ID, "harmonize"))).click()


def _wait_status(browser, word: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT_S).until(lambda b: word in b.find_element(By.ID, "status").text)
    return browser.find_element(By.ID, "status").text


def _download_href(browser, other_than: str | None = None) -> str:
    """The result's download link (one other than ``other_than``: a newer result). The page
    re-renders the link while a result arrives, so a stale element means "look again"."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def href(b):
        value = b.find_element(By.CSS_SELECTOR, "#download a[href]").get_attribute("href")
        return value if value != other_than else None

    return WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(href)


def _download(browser, folder: Path) -> np.ndarray:
    href = _download_href(browser)
    target = folder / f"download-{time.monotonic_ns()}.png"
    with urllib.request.urlopen(href, timeout=WAIT_S) as response:
        target.write_bytes(response.read())
    with Image.open(target) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_harmonize_an_example_in_the_browser(browser, default_server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(default_server)
    WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#composite input[type=file]"))
    panel = browser.find_element(By.ID, "model-panel").text
    assert "ngf 16, 6 levels" in panel and "extractor width 16" in panel and "affine colour transform" in panel
    assert "with radius 64; strength auto (measured per image" in panel  # the bundled file's recommendations
    measure = browser.find_element(By.CSS_SELECTOR, "#strength-auto input[type=checkbox]")
    assert measure.is_selected()  # so the page measures the strength per image, as the file recommends
    original, inside = bio.load_image(str(COMPOSITE)).rgb8, read_mask(MASK)

    # 1. composite + mask -> the result appears (slider) and downloads at full resolution.
    _upload(browser, "composite", COMPOSITE)
    _upload(browser, "mask", MASK)
    _click_harmonize(browser)
    status = _wait_status(browser, "Done")
    assert "meadow_squirrel.jpg (640\u00d7512)" in status
    WebDriverWait(browser, WAIT_S).until(lambda b: b.execute_script(
        "const imgs = document.querySelectorAll('#before-after img');"
        "return imgs.length >= 2 && Array.from(imgs).every(i => i.complete && i.naturalWidth > 0);"))
    assert "before (input)" in browser.find_element(By.ID, "scores").text
    result = _download(browser, tmp_path)
    assert result.shape == original.shape
    np.testing.assert_array_equal(result[~inside], original[~inside])
    assert np.abs(result[inside].astype(int) - original[inside]).mean() > 0.5

    # 1b. the box unticked and the strength slider at 0: the same request gives back the input's pixels.
    def set_strength(value: str) -> None:
        box = browser.find_element(By.CSS_SELECTOR, "#strength input[type=number]")
        box.clear()
        box.send_keys(value, Keys.TAB)
        time.sleep(0.3)

    previous = _download_href(browser)
    measure.click()
    set_strength("0")
    _click_harmonize(browser)
    _download_href(browser, other_than=previous)  # the new result has arrived
    np.testing.assert_array_equal(_download(browser, tmp_path), original)
    set_strength("1")

    # 2. an empty mask: a message in the page, no traceback, and the page keeps working.
    empty = tmp_path / "empty_mask.png"
    Image.new("L", (640, 512), 0).save(empty)
    _upload(browser, "mask", empty)
    time.sleep(0.5)
    _click_harmonize(browser)
    status = _wait_status(browser, "Error")
    assert "empty_mask.png: mask is empty" in status and "Traceback" not in browser.page_source

    # 3. paint the mask on the composite instead: strokes replace the (empty) uploaded mask.
    canvas = browser.find_elements(By.CSS_SELECTOR, "#painter canvas")[-1]
    ActionChains(browser).move_to_element(canvas).click_and_hold().move_by_offset(40, 0).move_by_offset(0, 30) \
        .move_by_offset(-40, 0).release().perform()
    time.sleep(0.5)
    _click_harmonize(browser)
    _wait_status(browser, "Done")
    painted = _download(browser, tmp_path)
    changed = (painted != original).any(axis=2)
    assert 0 < changed.mean() < 0.2  # only around the stroke

    # 4. a file that is not an image: the library's message, not a decoding error.
    junk = tmp_path / "holiday.jpg"
    junk.write_bytes(b"this is not a JPEG" * 8)
    _upload(browser, "composite", junk)
    time.sleep(0.5)
    _click_harmonize(browser)
    status = _wait_status(browser, "Error")
    assert "holiday.jpg" in status and "Traceback" not in browser.page_source
