"""Screenshot of the web app with a harmonized example, for the README (docs/images/web_app.png).

    PYTHONPATH=src python benchmarks/web_screenshot.py docs/images/web_app.png

Serves the app with the default model on a free local port, drives Debian's headless Chromium
(``apt-get install chromium chromium-driver``; ``pip install selenium``): clicks the bundled
squirrel example, harmonizes it, moves the before/after handle onto the squirrel, and saves the
page as a PNG of at most 256 colours, under 300 KB.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["SE_OFFLINE"] = "true"


def main(out: str) -> None:
    import torch
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from bargainnet.inference import Harmonizer
    from bargainnet.web.app import WebApp, launch

    torch.set_num_threads(1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = WebApp(Harmonizer.from_pretrained())
    demo = launch(app, port=port)
    options = Options()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100",
                "--hide-scrollbars"):
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        browser.get(demo.local_url)
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#composite input[type=file]"))
        row = [r for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr") if r.is_displayed()][1]
        row.click()  # the squirrel
        time.sleep(2)
        browser.find_element(By.ID, "harmonize").click()
        wait.until(lambda b: "Done" in b.find_element(By.ID, "status").text)
        time.sleep(2)
        slider = browser.find_element(By.CSS_SELECTOR, "#before-after")
        ActionChains(browser).move_to_element(slider).click_and_hold().move_by_offset(int(slider.size["width"] * 0.2), 0) \
            .release().perform()
        browser.execute_script("window.scrollTo(0, 0);")
        time.sleep(1)
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.png"
            browser.save_screenshot(str(raw))
            image = Image.open(raw).convert("RGB")
            for colours in (256, 192, 128, 96):  # the fewest colours only when needed to stay < 300 KB
                image.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
                if Path(out).stat().st_size < 300_000:
                    break
        print(f"{out}: {Path(out).stat().st_size / 1024:.0f} KB")
    finally:
        browser.quit()
        demo.close()
        app.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/images/web_app.png")
