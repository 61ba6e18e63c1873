"""`zoo serve` sent SIGTERM under load, as Kubernetes does to a pod in a rolling update (issue 22).

16 keep-alive clients (httpx, threads) post 28x28 MNIST PNGs to /predict without pause; after 1.5 s the
server gets SIGTERM; the clients go on for 1 s more (a load balancer still sends traffic while its
endpoints catch up), then stop. For each --drain-delay (0 and 3) and --workers (1, 2): every answer
after SIGTERM by status or transport error, how long until readiness said 503, and the exit code and
time. With a drain delay longer than the clients' second, no request may fail; with 0, the socket closes
at once and the clients that go on sending are refused (what a pod without a drain delay does to its
clients). LeNet ONNX with random weights, on 127.0.0.1 only.

    python scripts/bench_drain.py            # -> benchmarks/drain.json, benchmarks/drain.md
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import numpy as np

from zoo.hardware import BENCHMARK_FLAGS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def lenet_onnx(folder: pathlib.Path) -> tuple[pathlib.Path, bytes]:
    """A LeNet run exported to ONNX (random weights) and one MNIST-small digit as PNG bytes."""
    import io

    import torch
    from PIL import Image

    from export.onnx import export_run
    from zoo import rundir
    from zoo.card import ModelCard
    from zoo.data.mnist import load_small
    from zoo.models import create

    card = ModelCard.for_model("lenet")
    torch.manual_seed(0)
    run = folder / "lenet5"
    run.mkdir()
    rundir.save_weights(run / rundir.WEIGHTS, create("lenet", num_classes=10, in_channels=1).eval())
    card.save(run / rundir.CARD)
    buf = io.BytesIO()
    Image.fromarray(np.asarray(load_small()["test"][0][0])).save(buf, "PNG")
    return export_run(run, log=None)["onnx"], buf.getvalue()


async def load_and_sigterm(url: str, proc: subprocess.Popen, digit: bytes, clients: int) -> tuple:
    """`clients` keep-alive clients (one event loop) post `digit` without pause; SIGTERM after 1.5 s; they go
    on 1 s more. ([(time, status or transport error)], when SIGTERM was sent, seconds until not ready)."""
    answers: list[tuple[float, str]] = []
    stop = asyncio.Event()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = await c.post("/predict", content=digit, headers={"Content-Type": "image/png"})
                    answers.append((time.monotonic(), str(r.status_code)))
                except httpx.TransportError as e:
                    answers.append((time.monotonic(), type(e).__name__))

    async def not_ready_after(sent: float) -> float:
        async with httpx.AsyncClient(headers={"Connection": "close"}, timeout=1) as c:
            while True:
                with contextlib.suppress(httpx.TransportError):  # (refused: not ready either)
                    if (await c.get(f"{url}/v2/health/ready")).status_code == 200:
                        await asyncio.sleep(0.01)
                        continue
                return time.monotonic() - sent

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(1.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        not_ready = await asyncio.wait_for(not_ready_after(sent), 1.0)
    except TimeoutError:
        not_ready = None
    await asyncio.sleep(max(0.0, sent + 1.0 - time.monotonic()))
    stop.set()
    await asyncio.gather(*tasks)
    return answers, sent, not_ready


def one(model: pathlib.Path, digit: bytes, drain: float, workers: int, clients: int) -> dict:
    """One server under load, SIGTERM, and what the clients got after it."""
    args = ["--port", "0", "--threads", "1", "--log-level", "warning", "--drain-delay", str(drain)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", "serve", str(model), *args, "--workers", str(workers)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = None
    for line in proc.stdout:
        m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if m:
            url = m.group(1)
            break
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    while httpx.get(f"{url}/v2/health/ready").status_code != 200:
        time.sleep(0.05)
    answers, sent, not_ready = asyncio.run(load_and_sigterm(url, proc, digit, clients))
    code = proc.wait(timeout=120)
    after = collections.Counter(status for t, status in answers if t > sent)
    return {
        "drain_delay_s": drain,
        "workers": workers,
        "requests": len(answers),
        "after_sigterm": dict(after),
        "failed_after_sigterm": sum(n for status, n in after.items() if status != "200"),
        "not_ready_after_s": None if not_ready is None else round(not_ready, 3),
        "exit_code": code,
        "exit_after_s": round(time.monotonic() - sent, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--drain-delay", type=float, default=3.0, help="the delay measured beside 0")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks")
    a = ap.parse_args()
    from zoo.hardware import cpu

    machine = cpu()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model, digit = lenet_onnx(pathlib.Path(tmp))
        runs = [one(model, digit, d, w, a.clients) for w in (1, 2) for d in (0.0, a.drain_delay)]
    result = {
        "cpu": machine.name,
        "cores": machine.cores,
        "flags": sorted(set(BENCHMARK_FLAGS) & machine.flags),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "clients": a.clients,
        "runs": runs,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "drain.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        f"| {r['workers']} | {r['drain_delay_s']:g} | {r['requests']} | "
        f"{', '.join(f'{k}: {v}' for k, v in sorted(r['after_sigterm'].items()))} | {r['failed_after_sigterm']} | "
        f"{r['not_ready_after_s']} | {r['exit_code']} after {r['exit_after_s']} s |"
        for r in runs
    ]
    flags = ", ".join(result["flags"]) or "none of " + ", ".join(BENCHMARK_FLAGS)
    head = "| workers | --drain-delay s | requests | after SIGTERM | failed after it | not ready after s | exit |"
    (a.out / "drain.md").write_text(
        f"# zoo serve: SIGTERM under load (`python scripts/bench_drain.py`)\n\n"
        f"{machine.name}, {machine.cores} usable CPUs, flags: {flags}; load average {load_start[0]:.2f} at "
        f"start, {result['load_average_end'][0]:.2f} at end (a shared machine). {a.clients} keep-alive clients "
        "post /predict; SIGTERM after 1.5 s; the clients go on for 1 s more.\n\n"
        f"{head}\n| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )
    print((a.out / "drain.md").read_text())


if __name__ == "__main__":
    main()
