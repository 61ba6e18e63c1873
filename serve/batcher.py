"""The dynamic batcher: requests that arrive within `max_delay_ms` of each other run as one batch.

    batcher = Batcher(predictor.predict, max_batch_size=32, max_delay_ms=5)
    await batcher.start()
    logits = await batcher.submit(x)        # x: float32 [n, C, H, W] -> [n, num_classes], its own rows
    await batcher.stop()                    # refuses new work, finishes what is queued

One collector task on the event loop takes requests from an asyncio queue: the first one opens a batch,
which then takes whatever else arrives until it holds `max_batch_size` rows or `max_delay_ms` have
passed. The batch runs on ONE inference worker thread (a single-thread executor), so the event loop
never waits on the model and the model never runs twice at once. Each caller gets back its own rows.
A request with more rows than `max_batch_size` runs as a batch of its own. If a batch fails, its
requests are run one by one, so one bad request fails alone; the worker carries on either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The batcher is stopping (the server is draining): no new work is taken."""


class BatcherBusy(RuntimeError):
    """The queue is full: the server is overloaded, try again."""


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future
    queued_at: float


_STOP = object()


class Batcher:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], *, max_batch_size: int = 32,
                 max_delay_ms: float = 5.0, max_queue: int = 1024,
                 on_batch: Callable[[int, float], None] | None = None):
        """predict: float32 [N, ...] -> [N, ...], run on the worker thread. max_queue: requests that may
        wait (more are refused with BatcherBusy). on_batch(rows, seconds) is called after each batch."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_delay_ms < 0:
            raise ValueError("max_delay_ms must be 0 or more")
        self.predict = predict
        self.max_batch_size = int(max_batch_size)
        self.max_delay = float(max_delay_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.on_batch = on_batch
        self.depth = 0  # rows waiting for the model (queued, or in a batch that is still filling)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = True

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-infer")
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="zoo-batcher")

    async def run_in_worker(self, fn: Callable, *args):
        """Run `fn(*args)` on the inference worker thread (for warm-up: the same thread the model runs on)."""
        if self._worker is None:
            raise BatcherClosed("the batcher has not started")
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """The model's output for `x` (float32 [n, ...], n >= 1), run in a batch with others."""
        if self._closed or self._queue is None:
            raise BatcherClosed("the server is shutting down")
        if self._queue.qsize() >= self.max_queue:
            raise BatcherBusy(f"{self._queue.qsize()} requests are already waiting; try again shortly")
        loop = asyncio.get_running_loop()
        item = _Item(x, loop.create_future(), time.perf_counter())
        self._queue.put_nowait(item)
        self.depth += len(x)
        return await item.future

    async def stop(self) -> None:
        """Stop taking work, run everything already queued, then stop the worker."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(_STOP)
        await self._task
        self._worker.shutdown(wait=True)

    async def _next(self, timeout: float | None):
        """The next queued item, waiting at most `timeout` seconds (None: forever); None on timeout."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            if timeout is not None and timeout <= 0:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        carry = None
        while True:
            first = carry if carry is not None else await self._next(None)
            carry = None
            if first is _STOP:
                return
            batch, rows = [first], len(first.x)
            deadline = loop.time() + self.max_delay
            while rows < self.max_batch_size:
                item = await self._next(deadline - loop.time())
                if item is None:
                    break
                if item is _STOP or rows + len(item.x) > self.max_batch_size:
                    carry = item  # opens the next batch (or ends the loop after this batch)
                    break
                batch.append(item)
                rows += len(item.x)
            self.depth -= rows
            batch = [it for it in batch if not it.future.done()]  # callers that went away
            if not batch:
                continue
            started = time.perf_counter()
            results = await loop.run_in_executor(self._worker, self._run, [it.x for it in batch])
            if self.on_batch is not None:
                try:
                    self.on_batch(sum(len(it.x) for it in batch), time.perf_counter() - started)
                except Exception:  # a metrics callback must never stop the worker
                    log.exception("on_batch callback failed")
            for it, result in zip(batch, results):
                if it.future.done():
                    continue
                if isinstance(result, BaseException):
                    it.future.set_exception(result)
                else:
                    it.future.set_result(result)

    def _run(self, xs: list[np.ndarray]) -> list:
        """On the worker thread: one output (or exception) per request."""
        try:
            y = self.predict(xs[0] if len(xs) == 1 else np.concatenate(xs))
            if len(y) != sum(len(x) for x in xs):
                raise RuntimeError(f"the model answered {len(y)} rows for {sum(len(x) for x in xs)} inputs")
            return np.split(y, np.cumsum([len(x) for x in xs])[:-1])
        except Exception as e:
            if len(xs) == 1:
                return [e]
        return [self._run([x])[0] for x in xs]  # isolate the request that fails
