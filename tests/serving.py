"""Helpers for the server tests: a real LeNet ONNX model (trained for a moment on real MNIST digits, so
its answers mean something), the digits as PNG files, and a real uvicorn server on 127.0.0.1.

The digits are MNIST-small's, which ship inside the package: these tests need nothing beside the clone."""

from __future__ import annotations

import contextlib
import io
import pathlib
import socket
import threading
import time

import numpy as np

BATCH = 64  # one pass of Adam over MNIST-small's 10,000 training digits, 64 at a time


def mnist_small(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, 28, 28] images, int64 [N] labels) of the embedded MNIST-small's "train" or "test" split."""
    from zoo.data.mnist import load_small

    return load_small()[split]


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def jpeg(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def trained_lenet_run(run: pathlib.Path) -> pathlib.Path:
    """A LeNet run directory (weights + card) after one pass of Adam over MNIST-small's training digits."""
    import torch

    from zoo import rundir
    from zoo.card import ModelCard
    from zoo.data.preprocess import normalize
    from zoo.models import create

    card = ModelCard.for_model("lenet", data="mnist-small", epochs=1)
    images, labels = mnist_small("train")
    x = torch.from_numpy(np.stack([normalize(im, card) for im in images]))
    y = torch.from_numpy(labels.astype(np.int64))
    torch.manual_seed(0)
    model = create(card.architecture, num_classes=card.num_classes, in_channels=card.in_channels)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains ten times faster on one thread than on two busy ones
    try:
        for i in range(0, len(x), BATCH):
            xb, yb = x[i : i + BATCH], y[i : i + BATCH]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    run.mkdir(parents=True, exist_ok=True)
    rundir.save_weights(run / rundir.WEIGHTS, model.eval())
    card.save(run / rundir.CARD)
    return run


def held_out_digits(count: int) -> list[tuple[bytes, int]]:
    """`count` digits the model never trained on (MNIST-small's test split), as (PNG bytes, label), one of
    each class first."""
    images, labels = mnist_small("test")
    order = [int(np.flatnonzero(labels == d)[0]) for d in range(10)]
    order += [i for i in range(len(labels)) if i not in order]
    return [(png(images[i]), int(labels[i])) for i in order[:count]]


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening socket on a free port (the port cannot be taken by anyone else before the server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(1024)
    return sock


@contextlib.contextmanager
def running(app, ready_path: str = "/v2/health/ready", timeout: float = 30.0, headers: dict | None = None):
    """Run `app` on uvicorn in a thread on a random port of 127.0.0.1; yields the base URL once ready."""
    import httpx
    import uvicorn

    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url + ready_path, headers=headers).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the server at {url} did not become ready")
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def zoo_serve(*args, env=None, cwd=None, prefix=(), **popen):
    """`zoo serve ARGS` as a real process of this checkout, its stdout and stderr together in one pipe;
    `env`: its environment (default: this one's), `cwd`: its working directory (default: the checkout),
    `prefix`: a command it runs under (taskset -c 0)."""
    import os
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    env = os.environ if env is None else env
    env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)}
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "zoo", "serve", *map(str, args)],
        cwd=root if cwd is None else cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


class Output:
    """Collects a process's output on a thread (so its pipe never fills) and finds lines in it."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(proc.stdout), daemon=True)
        self.thread.start()

    def wait_for(self, pattern, timeout=60):
        import re

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None and not self.thread.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.lines)}")


@contextlib.contextmanager
def watched(proc):
    """The process's Output; on leaving, the process is killed if it still runs, and its output read."""
    out = Output(proc)
    try:
        yield out
    finally:
        if proc.poll() is None:
            proc.kill()
        out.thread.join(10)


def ready_url(out, proc):
    """The URL the start-up line names, once the server there is ready."""
    import httpx

    url = out.wait_for(r"on (http://127\.0\.0\.1:\d+) \(page at /").group(1)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                return url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "".join(out.lines)
        time.sleep(0.05)


def ready_workers(url, proc, out, count, timeout=120):
    """The pids of `count` workers that answer /health 200, asked on fresh connections (each lands on any)."""
    import httpx

    deadline, ready = time.monotonic() + timeout, set()
    while len(ready) < count:
        assert time.monotonic() < deadline and proc.poll() is None, "".join(out.lines)
        try:
            r = httpx.get(f"{url}/health", headers={"Connection": "close"})
            if r.status_code == 200:
                ready.add(r.json()["pid"])
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    return ready
