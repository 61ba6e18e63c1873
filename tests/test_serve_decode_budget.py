"""The server's decode memory as a whole (serve/budget.py): the budget's accounting, an image that alone
needs more refused, decodes that together need more never overlapping (an instrumented count, no timing),
and on a real server (127.0.0.1, random port) a 16-bit PNG over the budget answered 413 in one line."""

import asyncio
import concurrent.futures
import functools
import io
import threading

import httpx
import numpy as np
import pytest
from PIL import Image
from serving import running

import infer
from serve.app import create_app
from serve.budget import DecodeBudget, DecodeTooLarge
from serve.service import decode
from zoo.card import ModelCard
from zoo.data import preprocess as preprocess_module
from zoo.data.preprocess import decode_bytes, open_image


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def blank16(width: int, height: int) -> bytes:
    """A blank 16-bit grayscale PNG: a few KB on disk, 18 bytes a pixel to decode."""
    return png(np.zeros((height, width), np.uint16))


def on_a_loop(test):
    """The async test `test`, run on an event loop of its own."""
    return functools.wraps(test)(lambda: asyncio.run(test()))


def test_decode_bytes_counts_the_mode_and_the_conversion():
    data = blank16(100, 50)
    img = open_image(data, load=False)
    assert img.mode.startswith("I;16")
    assert decode_bytes(img, "L") == 100 * 50 * (2 + 18 + 1)
    gray = open_image(png(np.zeros((50, 100), np.uint8)), load=False)
    assert decode_bytes(gray, "L") == 100 * 50
    assert decode_bytes(gray, "RGB") == 100 * 50 * (1 + 4)
    rgba = open_image(png(np.zeros((50, 100, 4), np.uint8)), load=False)
    assert decode_bytes(rgba, "RGB") == 100 * 50 * (4 + 12 + 4)


@on_a_loop
async def test_taking_and_giving_back():
    budget = DecodeBudget(100)
    await budget.acquire(60)
    await budget.acquire(40)
    assert budget.in_use == 100
    budget.release(60)
    budget.release(40)
    assert budget.in_use == 0 and budget.peak == 100


@on_a_loop
async def test_an_image_over_the_whole_budget_is_refused_and_takes_nothing():
    budget = DecodeBudget(100)
    with pytest.raises(DecodeTooLarge, match=r"--max-decode-mb"):
        await budget.acquire(101)
    assert budget.in_use == 0 and not budget.waiting


@on_a_loop
async def test_a_decode_that_does_not_fit_waits_for_the_one_before():
    budget = DecodeBudget(100)
    await budget.acquire(60)
    second = asyncio.create_task(budget.acquire(60))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not second.done() and budget.in_use == 60  # waiting, nothing taken
    budget.release(60)
    await second
    assert budget.in_use == 60 and budget.peak == 60


@on_a_loop
async def test_a_cancelled_waiter_lets_the_ones_behind_it_in():
    budget = DecodeBudget(100)
    await budget.acquire(50)
    big = asyncio.create_task(budget.acquire(80))
    small = asyncio.create_task(budget.acquire(10))
    await asyncio.sleep(0)
    assert not small.done()  # first come, first served: behind the big one
    big.cancel()
    await asyncio.gather(big, return_exceptions=True)
    await small
    assert budget.in_use == 60 and not budget.waiting


def test_two_decodes_that_together_exceed_the_budget_never_overlap(monkeypatch):
    """Two real 16-bit PNGs, each needing more than half the budget, decoded on a pool of two threads:
    an instrumented preprocess counts the decodes running at once."""
    card = ModelCard.for_model("lenet", num_classes=10)
    data = blank16(300, 300)
    need = decode_bytes(open_image(data, load=False), card.color_mode)
    budget = DecodeBudget(int(need * 1.5))
    running_now, most = 0, 0
    lock = threading.Lock()
    real = preprocess_module.preprocess

    def counted(*args, **kwargs):
        nonlocal running_now, most
        with lock:
            running_now += 1
            most = max(most, running_now)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                running_now -= 1

    monkeypatch.setattr("serve.service.preprocess", counted)

    async def go():
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            return await asyncio.gather(*(decode(data, card, None, pool, budget) for _ in range(4)))

    results = asyncio.run(go())
    assert len(results) == 4 and most == 1 and budget.peak == need and budget.in_use == 0


@pytest.fixture(scope="module")
def predictor(served_lenet):
    return infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)


def test_a_16_bit_png_over_the_budget_is_refused_413(predictor):
    big = blank16(1000, 1000)  # 21 MB to decode to L, over a 16 MB budget
    small = png(np.zeros((300, 300), np.uint8))  # 90 KB to decode: within it
    with running(create_app(predictor, max_decode_mb=16)) as url:
        r = httpx.post(url + "/predict", content=big, headers={"Content-Type": "image/png"})
        assert r.status_code == 413
        assert r.json() == {"error": r.json()["error"]} and "--max-decode-mb" in r.json()["error"]
        assert "\n" not in r.json()["error"]
        files = [("file", ("a.png", small, "image/png")), ("file", ("b.png", big, "image/png"))]
        r = httpx.post(url + "/predict", files=files)
        assert r.status_code == 413 and r.json()["error"].startswith("image 2 of 2: ")
        r = httpx.post(url + "/predict", content=small, headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
    assert len(big) < 64 * 1024  # small on disk
