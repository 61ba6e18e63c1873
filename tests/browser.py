"""Headless Chromium for page tests: find it, drive it, and check what it rendered.

Debian's `chromium` and `chromium-driver` packages (/usr/bin/chromium, /usr/bin/chromedriver), driven
through Selenium with both paths given, so nothing is ever downloaded. Tests that use `headless_chrome`
skip with the reason when the browser, its driver or Selenium is missing.

    from browser import headless_chrome, render_check
    def test_page(tmp_path):
        with headless_chrome(tmp_path) as driver:
            result = render_check(driver, "file:///.../index.html", tmp_path / "shot.png")
        assert result["broken"] == [] and result["blank"] is False
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil

import pytest

# The flags Chromium needs here: root (no sandbox), no GPU, and no network of its own (the machines have
# none: without the background-networking flags Chromium keeps trying to reach Google's hosts).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


def find_chromium() -> tuple[str, str] | None:
    """(browser, chromedriver) paths, from $CHROMIUM / $CHROMEDRIVER or PATH; None if either is missing."""
    browser = os.environ.get("CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def headless_chrome(tmp_path: pathlib.Path, width: int = 1280, height: int = 2000):
    """A Selenium Chrome driver on headless Chromium (skips the test when that cannot be had)."""
    found = find_chromium()
    if found is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip: .[dev])")
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def render_check(driver, url: str, screenshot: pathlib.Path | None = None) -> dict:
    """Open `url`; return images (count), broken (src of each <img> that did not decode), the
    screenshot's PNG bytes and pixel spread, and blank (True if the screenshot is one flat colour)."""
    import io

    import numpy as np
    from PIL import Image

    driver.get(url)
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.currentSrc.slice(0, 80), i.complete, i.naturalWidth])"
    )
    broken = [src for src, complete, width in images if not complete or width == 0]
    png = driver.get_screenshot_as_png()
    if screenshot is not None:
        screenshot.write_bytes(png)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return {
        "images": len(images),
        "broken": broken,
        "png": png,
        "std": float(pixels.std()),
        "blank": bool(pixels.std() < 2.0),
        "title": driver.title,
    }
