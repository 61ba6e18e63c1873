"""The dynamic batcher: requests that arrive within `max_delay_ms` of each other run as one batch.

    batcher = Batcher(predictor.predict, max_batch_size=32, max_delay_ms=5)
    await batcher.start()
    logits = await batcher.submit(x)        # x: float32 [n, C, H, W] -> [n, num_classes], its own rows
    await batcher.stop()                    # refuses new work, finishes what is queued

Requests wait in a queue. A batch closes when it holds `max_batch_size` rows or when its oldest request
has waited `max_delay_ms` (Triton's max queue delay), whichever comes first; while the model runs a
batch, the next one fills, so under load batches run back to back. One collector task on the event loop
forms the batches; it sleeps on one timer per batch, not per request, so a request costs a list append
and a future. The batch runs on ONE inference worker thread (a single-thread executor), so the event
loop never waits on the model and the model never runs twice at once. Each caller gets back its own
rows. A request with more rows than `max_batch_size` runs as a batch of its own. If a batch fails, its
requests are run one by one, so one bad request fails alone; the worker carries on either way.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import numpy as np

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class BatcherClosed(RuntimeError):
    """The batcher is stopping (the server is draining): no new work is taken."""


class BatcherBusy(RuntimeError):
    """The queue is full: the server is overloaded, try again."""


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future
    queued_at: float  # loop.time() when it was submitted


class Batcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int = 32,
        max_delay_ms: float = 5.0,
        max_queue: int = 1024,
        on_batch: Callable[[int, float], None] | None = None,
    ):
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
        self.depth = 0  # rows waiting for the model (queued, not yet in a running batch)
        self._queue: collections.deque[_Item] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Future | None = None  # what the collector sleeps on, when it sleeps
        self._task: asyncio.Task | None = None
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = True

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-infer")
        self._closed = False
        self._task = self._loop.create_task(self._collect(), name="zoo-batcher")

    async def run_in_worker(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn(*args)` on the inference worker thread (for warm-up: the same thread the model runs on)."""
        if self._worker is None:
            raise BatcherClosed("the batcher has not started")
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """The model's output for `x` (float32 [n, ...], n >= 1), run in a batch with others."""
        if self._closed:
            raise BatcherClosed("the server is shutting down")
        if len(self._queue) >= self.max_queue:
            raise BatcherBusy(f"{len(self._queue)} requests are already waiting; try again shortly")
        loop = self._loop
        item = _Item(x, loop.create_future(), loop.time())
        self._queue.append(item)
        self.depth += len(x)
        if len(self._queue) == 1 or self.depth >= self.max_batch_size:  # a batch opens, or is full
            self._wake()
        return await item.future

    async def stop(self) -> None:
        """Stop taking work, run everything already queued, then stop the worker."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        await self._task
        self._worker.shutdown(wait=True)

    def _wake(self, *_) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _sleep(self, until: float | None) -> None:
        """Sleep until `_wake()` is called or the loop's clock reaches `until` (None: no time limit)."""
        self._wakeup = self._loop.create_future()
        timer = self._loop.call_at(until, self._wake) if until is not None else None
        try:
            await self._wakeup
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    def _take(self) -> list[_Item]:
        """The next batch off the queue: at least one request, at most max_batch_size rows otherwise."""
        batch, rows = [], 0
        while self._queue:
            n = len(self._queue[0].x)
            if batch and rows + n > self.max_batch_size:
                break
            item = self._queue.popleft()
            self.depth -= n
            if item.future.done():  # a caller that went away is dropped here
                continue
            batch.append(item)
            rows += n
        return batch

    async def _collect(self) -> None:
        loop = self._loop
        while True:
            if not self._queue:
                if self._closed:
                    return
                await self._sleep(None)
                continue
            # the batch is ready when it is full or its oldest request has waited max_delay (or on stop)
            deadline = self._queue[0].queued_at + self.max_delay
            if self.depth < self.max_batch_size and not self._closed and loop.time() < deadline:
                await self._sleep(deadline)
                continue  # look again: full, due, or stopping
            batch = self._take()
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
