"""Screenshot TensorBoard's Time Series dashboard on two short real `zoo train` runs, for the README.

    python scripts/screenshot_tensorboard.py

Trains LeNet-5 on the embedded MNIST-small twice (6 epochs, --lr 0.05 and 0.01; about a minute in all on
2 CPU cores) into a temporary runs/ folder, serves it with `tensorboard --logdir` on 127.0.0.1, opens the
dashboard in headless Chromium (Debian's chromium and chromium-driver, driven by Selenium; nothing is
downloaded, no network needed), filters the tags down to the epoch curves (train/ and val/: loss and
accuracy) and writes docs/images/tensorboard.png. --runs DIR screenshots existing runs instead of training.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from zoo.child import free_port, run_zoo

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNS = {"lenet-lr0.05": ["--lr", "0.05"], "lenet-lr0.01": ["--lr", "0.01"]}
TAG_FILTER = "^(train|val)/"  # train/loss, train/accuracy, val/loss, val/accuracy
# Headless, as root (no sandbox), no GPU, and no network of Chromium's own (as in tests/browser.py).
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


def train_runs(runs: pathlib.Path, epochs: int) -> None:
    """Train each of RUNS into runs/NAME (LeNet-5, MNIST-small, one thread)."""
    for name, extra in RUNS.items():
        args = ["train", "lenet", "--epochs", str(epochs), "--log-every", "20", "--threads", "1", *extra]
        result = run_zoo([*args, "--output", str(runs / name)], cwd=runs.parent)
        print(f"trained {name} in {result['wall_s']:.0f} s")


@contextlib.contextmanager
def tensorboard(logdir: pathlib.Path, timeout: float = 60.0):
    """Serve `logdir` with TensorBoard on a free local port; yields its URL, stops it on exit."""
    port = free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1"]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/data/runs", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"TensorBoard did not start:\n{log.read().decode(errors='replace')}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextlib.contextmanager
def chromium(profile: pathlib.Path, width: int, height: int):
    """Selenium on Debian's headless Chromium, the viewport exactly width x height CSS pixels."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, timeout: float, what: str):
    """Poll the page with `script` until it returns something truthy; that value (RuntimeError on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def show_curves(driver, url: str, n_cards: int, timeout: float = 90.0) -> None:
    """Open the Time Series dashboard, set smoothing to 0 (a few points a curve) and scale to whole curves
    (the settings pane stays open: two cards a row), filter the tags, and wait until the charts have drawn."""
    driver.get(f"{url}/#timeseries")
    wait_for(driver, "return document.querySelectorAll('line-chart').length", timeout, "the first chart")
    smoothing = driver.find_element(By.CSS_SELECTOR, "input[aria-labelledby='scalars-smoothing-label']")
    smoothing.clear()
    smoothing.send_keys("0", Keys.ENTER)
    outliers = "//metrics-dashboard-right-pane//mat-checkbox[contains(., 'Ignore outliers')]//input"
    if driver.find_element(By.XPATH, outliers).is_selected():
        driver.find_element(By.XPATH, outliers + "/..").click()  # scale to whole curves (epoch 1's loss)
    tags = driver.find_element(By.CSS_SELECTOR, "metrics-tag-filter input")
    tags.send_keys(TAG_FILTER, Keys.ESCAPE)  # Escape: close the autocomplete list over the charts
    # Cards are drawn lazily and a filtered-out one may linger a moment: count the ones on screen.
    charts = "Array.from(document.querySelectorAll('scalar-card line-chart')).filter(c => c.offsetParent)"
    wait_for(driver, f"return {charts}.length >= {n_cards}", timeout, f"{n_cards} scalar charts")
    drawn = f"return {charts}.every(c => c.querySelector('canvas, svg path'))"  # WebGL, or SVG without it
    wait_for(driver, drawn, timeout, "the charts to draw")
    driver.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
    time.sleep(3)  # the last fetches and the line animation


def screenshot(url: str, output: pathlib.Path, profile: pathlib.Path, width: int = 1400, height: int = 1040) -> int:
    """Write the dashboard's screenshot to `output` (PNG, palette-quantised to stay small); its size in bytes."""
    with chromium(profile, width, height) as driver:
        show_curves(driver, url, n_cards=4)
        png = driver.get_screenshot_as_png()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    output.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(output, optimize=True)
    return output.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=pathlib.Path, default=ROOT / "docs/images/tensorboard.png")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--runs", type=pathlib.Path, help="screenshot these existing runs instead of training two")
    args = ap.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or pathlib.Path(tmp) / "runs"
        if args.runs is None:
            runs.mkdir()
            train_runs(runs, args.epochs)
        with tensorboard(runs) as url:
            size = screenshot(url, args.output, pathlib.Path(tmp) / "chromium-profile")
    print(f"wrote {args.output} ({size / 1024:.0f} KiB) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
