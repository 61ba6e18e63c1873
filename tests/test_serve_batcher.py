"""The dynamic batcher on a real ONNX Runtime LeNet: concurrent callers get their own rows, batches
respect the size limit, a bad request fails alone, stop() finishes the queue, a full queue refuses."""

import asyncio
import threading

import numpy as np
import pytest
from tolerances import assert_logits_close

import infer
from serve.batcher import Batcher, BatcherBusy, BatcherClosed


@pytest.fixture(scope="module")
def predictor(served_lenet):
    return infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)


def inputs(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, 1, 28, 28)).astype(np.float32) for n in sizes]


def test_concurrent_callers_get_their_own_rows_in_bounded_batches(predictor):
    sizes = [1, 2, 3, 1, 1, 12, 2, 1, 3, 1, 2, 1, 1, 1, 2, 3]  # 12 is over the limit: it runs alone
    xs = inputs(sizes)
    batches, threads = [], set()

    def predict(x):
        threads.add(threading.get_ident())
        return predictor.predict(x)

    async def main():
        b = Batcher(predict, max_batch_size=8, max_delay_ms=50, on_batch=lambda n, s: batches.append(n))
        await b.start()
        try:
            return await asyncio.gather(*(b.submit(x) for x in xs))
        finally:
            await b.stop()

    outs = asyncio.run(main())
    # each row computed in a batch of others vs alone: ONNX Runtime gives the same bits here (measured, 1
    # and 2 threads), which nothing promises on another CPU: tolerances.py (another row: 1.6 x max |logit|)
    for x, y in zip(xs, outs):
        assert y.shape == (len(x), 10)
        assert_logits_close(y, predictor.predict(x))
    assert sum(batches) == sum(sizes) and len(batches) < len(sizes)
    assert all(n <= 8 for n in batches if n != 12) and 12 in batches
    assert len(threads) == 1 and threading.get_ident() not in threads  # one worker, never the loop's thread


def test_a_bad_request_fails_alone_and_the_worker_carries_on(predictor):
    good = inputs([1, 2, 1], seed=1)
    bad = np.zeros((1, 1, 20, 20), np.float32)  # the wrong size: the model refuses it

    async def main():
        b = Batcher(predictor.predict, max_batch_size=32, max_delay_ms=50)
        await b.start()
        try:
            first = await asyncio.gather(
                *(b.submit(x) for x in [good[0], bad, good[1], good[2]]), return_exceptions=True
            )
            after = await b.submit(good[0])
        finally:
            await b.stop()
        return first, after

    first, after = asyncio.run(main())
    assert isinstance(first[1], ValueError)
    for x, y in zip(good, [first[0], first[2], first[3]]):
        assert_logits_close(y, predictor.predict(x))
    assert_logits_close(after, predictor.predict(good[0]))


def test_stop_finishes_queued_work_then_refuses(predictor):
    xs = inputs([1] * 6, seed=2)

    async def main():
        b = Batcher(predictor.predict, max_batch_size=2, max_delay_ms=200)
        await b.start()
        pending = [asyncio.ensure_future(b.submit(x)) for x in xs]
        await asyncio.sleep(0)  # let them queue
        await b.stop()
        with pytest.raises(BatcherClosed):
            await b.submit(xs[0])
        return [p.result() for p in pending]

    for x, y in zip(xs, asyncio.run(main())):
        assert_logits_close(y, predictor.predict(x))


def test_a_full_queue_refuses_new_work(predictor):
    xs = inputs([1, 1, 1], seed=3)

    async def main():
        b = Batcher(predictor.predict, max_batch_size=32, max_delay_ms=20, max_queue=2)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit(x) for x in xs), return_exceptions=True)
        finally:
            await b.stop()

    results = asyncio.run(main())
    assert isinstance(results[2], BatcherBusy)
    assert all(isinstance(r, np.ndarray) for r in results[:2])


def test_a_full_batch_runs_without_waiting_out_the_delay_and_a_lone_request_waits(predictor):
    xs = inputs([1, 1, 1, 1, 1], seed=4)

    async def main():
        batches = []
        b = Batcher(predictor.predict, max_batch_size=4, max_delay_ms=600_000, on_batch=lambda n, s: batches.append(n))
        await b.start()
        try:
            # four rows fill the batch: it runs now (the 10-minute delay would fail the wait_for)
            full = await asyncio.wait_for(asyncio.gather(*(b.submit(x) for x in xs[:4])), timeout=60)
            # one row alone waits for company until the delay has passed
            lone = asyncio.ensure_future(b.submit(xs[4]))
            await asyncio.sleep(0.2)
            waiting = not lone.done() and b.depth == 1
        finally:
            await b.stop()  # stop() runs what is queued without waiting out the delay
        return full, await lone, waiting, batches

    full, lone, waiting, batches = asyncio.run(main())
    assert waiting and batches == [4, 1]
    for x, y in zip(xs, [*full, lone]):
        assert_logits_close(y, predictor.predict(x))


def test_requests_that_arrive_within_the_delay_share_a_batch(predictor):
    xs = inputs([1] * 3, seed=5)

    async def main():
        batches = []
        b = Batcher(predictor.predict, max_batch_size=32, max_delay_ms=2000, on_batch=lambda n, s: batches.append(n))
        await b.start()
        try:
            first = asyncio.ensure_future(b.submit(xs[0]))
            await asyncio.sleep(0.1)
            later = [asyncio.ensure_future(b.submit(x)) for x in xs[1:]]
            await asyncio.wait_for(first, timeout=60)
            return batches, [await f for f in later]
        finally:
            await b.stop()

    batches, _ = asyncio.run(main())
    assert batches == [3]  # the two later requests rode along in the first one's batch
