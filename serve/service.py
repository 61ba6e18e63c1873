"""The server's work apart from HTTP routing: one `Service` per app holds the model, the dynamic batcher,
readiness and draining, the metrics and the limits, and does the operations the routes answer with.

Inference goes through the batcher (serve/batcher.py) on one worker thread, max_batch_size rows at a
time; image decoding and request parsing run on a small thread pool, so the event loop never waits on
CPU work. A bad input is a starlette HTTPException with its 4xx status; the app answers it as JSON.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
from starlette.exceptions import HTTPException

from zoo import answer
from zoo.card import ModelCard
from zoo.data.preprocess import ImageError, decode_bytes, open_image, preprocess
from zoo.hardware import usable_cpu_count

from . import protocol
from .batcher import Batcher, BatcherBusy, BatcherClosed
from .budget import DecodeBudget, DecodeTooLarge
from .metrics import Metrics
from .options import ServeOptions

log = logging.getLogger("zoo.serve")

INLINE_PIXELS = 128 * 128  # images up to this size decode on the event loop: quicker than a thread hop


def json_bytes(payload: Any) -> bytes:
    """JSON bytes as Starlette's JSONResponse writes them."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def decode(
    data: bytes,
    card: ModelCard,
    max_pixels: int | None,
    pool: concurrent.futures.Executor,
    budget: DecodeBudget | None = None,
) -> np.ndarray:
    """One encoded image -> the model's input, as zoo.data.preprocess.preprocess gives it. The header is
    read here; an image of at most INLINE_PIXELS decodes on the spot (cheaper than a hop to a thread),
    a larger one on `pool`, so the event loop never waits on a big decode, once `budget` (the server's
    decode memory, serve/budget.py) has room for it: DecodeTooLarge if it alone needs more."""
    img = open_image(data, max_pixels=max_pixels, load=False)
    if img.width * img.height <= INLINE_PIXELS:
        return preprocess(img, card, max_pixels=max_pixels)
    run = functools.partial(preprocess, img, card, max_pixels=max_pixels)
    held = (
        contextlib.nullcontext()
        if budget is None
        else budget.held(
            decode_bytes(img, card.color_mode), f"an image of {img.width}x{img.height} pixels ({img.mode})"
        )
    )
    async with held:
        return await asyncio.get_running_loop().run_in_executor(pool, run)


class Service:
    """One served model: `predictor` (an infer.Predictor) with the limits of `options`."""

    def __init__(self, predictor, options: ServeOptions):
        self.predictor, self.options, self.card = predictor, options, predictor.card
        self.name: str = options.model_name or predictor.name
        self.metrics = Metrics(self.name, predictor.backend, str(getattr(predictor, "device", "")))
        self.batcher = Batcher(
            predictor.predict,
            max_batch_size=options.max_batch_size,
            max_delay_ms=options.max_delay_ms,
            max_queue=options.max_queue,
            on_batch=self.metrics.batch,
        )
        self.metrics.queue_depth.set_function(lambda: self.batcher.depth)
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=options.decode_threads or min(4, usable_cpu_count()), thread_name_prefix="zoo-decode"
        )
        self.budget = DecodeBudget(options.max_decode)
        self.ready = False  # set once the warm-up has run
        self.draining = False

    # ---- life -------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The app's lifespan: the batcher runs and the model warms up; at the end, drain and stop."""
        await self.batcher.start()
        warming = asyncio.get_running_loop().create_task(self._warm_up())
        try:
            yield
        finally:
            self.start_draining()
            await warming
            await self.batcher.stop()
            self.pool.shutdown(wait=True)

    async def _warm_up(self) -> None:
        started = time.perf_counter()
        try:
            for n in sorted({1, self.options.max_batch_size}):
                x = np.zeros((n, *self.card.input_shape), np.float32)
                await self.batcher.run_in_worker(self.predictor.predict, x)
        except Exception:
            log.exception("warm-up failed: the server stays not ready")
            return
        seconds = time.perf_counter() - started
        self.metrics.warmup_seconds.set(seconds)
        # What start-up made (libraries, the app, the model) lives as long as the server: out of the
        # collector's sight, a full collection no longer walks it and stalls requests for milliseconds.
        gc.collect()
        gc.freeze()
        self.ready = True
        p = self.predictor
        log.info(
            "%s ready: %s, warm-up %.2f s", self.name, p.describe() if hasattr(p, "describe") else p.backend, seconds
        )

    def start_draining(self) -> None:
        """Not ready from now on (readiness 503); requests are still answered, with `Connection: close`,
        until the server stops accepting. Called on SIGTERM / SIGINT."""
        if not self.draining:
            log.info("draining: readiness 503; requests are answered until the server stops accepting")
        self.draining = True

    @property
    def status(self) -> str:
        return "draining" if self.draining else "ready" if self.ready else "warming up"

    def check_ready(self) -> None:
        if not self.ready:
            raise HTTPException(503, "the model is still warming up; try again shortly", {"Retry-After": "1"})

    def check_model(self, model: str) -> None:
        if model != self.name:
            raise HTTPException(404, f"unknown model {model!r}; this server serves {self.name!r}")

    # ---- inference --------------------------------------------------------------------------------------
    async def off_loop(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """fn(*args, **kwargs) on the decoding pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    async def infer(self, x: np.ndarray) -> np.ndarray:
        """The model's logits for x, max_batch_size rows at a time: the model never holds more."""
        size = self.options.max_batch_size
        try:
            if len(x) <= size:
                return await self.batcher.submit(x)
            return np.concatenate([await self.batcher.submit(x[i : i + size]) for i in range(0, len(x), size)])
        except BatcherBusy as e:
            raise HTTPException(503, f"server busy: {e}", {"Retry-After": "1"}) from None
        except BatcherClosed as e:
            raise HTTPException(503, str(e)) from None

    async def _preprocess(self, images: list[bytes], first: int = 0, total: int = 1) -> np.ndarray:
        """Encoded images -> the model's input; these are images first+1.. of the request's `total`.
        Each decodes as `decode` does it (the large ones on the pool, within the decode budget)."""
        pixels = self.options.max_image_pixels
        results = await asyncio.gather(
            *(decode(data, self.card, pixels, self.pool, self.budget) for data in images), return_exceptions=True
        )
        for i, r in enumerate(results):
            where = "" if total == 1 else f"image {first + i + 1} of {total}: "
            if isinstance(r, ImageError):
                raise HTTPException(400, f"{where}{r}")
            if isinstance(r, DecodeTooLarge):
                raise HTTPException(413, f"{where}{r}")
            if isinstance(r, BaseException):
                raise r
        return np.stack(results)

    async def infer_images(self, images: list[bytes]) -> np.ndarray:
        """Logits for encoded images, max_batch_size decoded and run at a time: a request of many
        images holds one batch of decoded pixels, never all of them."""
        if len(images) > self.options.max_images:  # callers check before reading; this guards any other way
            raise HTTPException(413, str(protocol.TooManyImages(len(images), self.options.max_images)))
        if len(images) == 1:
            return await self.infer(await self._preprocess(images))
        size = self.options.max_batch_size
        return np.concatenate(
            [
                await self.infer(await self._preprocess(images[i : i + size], i, len(images)))
                for i in range(0, len(images), size)
            ]
        )

    async def classify(self, images: list[bytes], k: int) -> bytes:
        """The /predict answer for encoded images, as JSON bytes: protocol.PredictResponse, one
        zoo.answer.ImageAnswer per image (the same object as a line of `zoo classify` holds), built as
        plain dicts by zoo.answer.answers: nothing is validated on this hot path."""
        self.check_ready()
        logits = await self.infer_images(images)
        try:
            protocol.check_finite(logits)  # a NaN probability is not JSON
        except protocol.NonFiniteOutput as e:
            raise non_finite(e) from None
        return json_bytes({"model": self.name, "predictions": answer.answers(logits, self.card.class_names, k)})


def non_finite(e: protocol.NonFiniteOutput) -> HTTPException:
    """The model computed NaN or infinity from images: a 500, logged."""
    log.error("%s; the answer is a 500", e)
    return HTTPException(500, str(e))
