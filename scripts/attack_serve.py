"""Issue 12's memory attack on a real `zoo serve` process: one KServe v2 request of 50,000 tiny PNGs, then
of 500,000 empty BYTES elements (binary and JSON), while a thread polls /health every 50 ms.

It trains a LeNet for one epoch on MNIST-small and exports it to ONNX (in a temp folder), starts
`python -m zoo serve MODEL --port 0 --threads 1` on 127.0.0.1, and reads the server's resident memory
(VmRSS, and VmHWM: the peak) from /proc/PID/status before, during and after each request. Runs:

- `after`: this checkout with its defaults (--max-images 256): the requests are refused (413) unread.
- `after, --max-images 1000000`: the cap out of the way, so the 50,000 images are decoded and run
  --max-batch-size at a time: what bounds memory without the cap.
- `before` (with --before REV): the same attack on the code of commit REV (from `git archive`), the
  50,000-image request only (it grew the server by gigabytes; the 500,000-element one stalls it).

Also, in process: ONNX Runtime's CPU memory arena on, off, and on with shrinkage after each run: the
memory a batch of 5,000 leaves behind and the time per run at batch 1 and 32 (why the arena stays on).

    python scripts/attack_serve.py                      # -> benchmarks/attack.json, benchmarks/attack.md
    python scripts/attack_serve.py --before c3a9541     # and the code before the fix
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

from zoo import atomic
from zoo.child import checkout_of

ROOT = pathlib.Path(__file__).resolve().parents[1]

HEADER = "Inference-Header-Content-Length"
POLL_S = 0.05


def env_for(checkout: pathlib.Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}


def lenet_onnx(tmp: pathlib.Path) -> pathlib.Path:
    """A LeNet trained for one epoch on MNIST-small and exported, by the `zoo` commands themselves."""
    run = tmp / "lenet"
    for args in (["train", "lenet", "--epochs", "1", "--output", str(run)], ["export", str(run), "--onnx"]):
        subprocess.run(
            [sys.executable, "-m", "zoo", *args], check=True, env=env_for(ROOT), cwd=ROOT, stdout=subprocess.DEVNULL
        )
    return run / "model.onnx"


def memory_mb(pid: int) -> dict:
    """{'rss': MB resident now, 'hwm': the peak resident since the process started}."""
    fields = dict(
        re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", pathlib.Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    )
    return {"rss": int(fields["VmRSS"]) / 1024, "hwm": int(fields["VmHWM"]) / 1024}


class Server:
    """`python -m zoo serve` on 127.0.0.1, any free port, from `checkout`; stopped by its own pid."""

    def __init__(self, checkout: pathlib.Path, model: pathlib.Path, *flags: str):
        import httpx

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zoo",
                "serve",
                str(model),
                "--port",
                "0",
                "--threads",
                "1",
                "--log-level",
                "warning",
                *flags,
            ],
            cwd=checkout,
            env=env_for(checkout),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in self.proc.stdout:
            m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError(f"zoo serve exited ({self.proc.wait()})")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # keep the pipe drained
        deadline = time.monotonic() + 120
        while httpx.get(self.url + "/health").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("zoo serve did not become ready")
            time.sleep(0.1)

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Watch:
    """A thread that asks /health every 50 ms and samples the server's memory: the slowest answer and
    the highest resident memory while it runs."""

    def __init__(self, url: str, pid: int):
        self.url, self.pid = url, pid
        self.slowest = 0.0
        self.failures = 0
        self.peak_rss = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import httpx

        with httpx.Client(timeout=30) as client:
            while not self.done.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(self.url + "/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.slowest = max(self.slowest, time.perf_counter() - started)
                self.failures += not ok
                self.peak_rss = max(self.peak_rss, memory_mb(self.pid)["rss"])
                time.sleep(POLL_S)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1), 255).save(buf, "PNG")
    return buf.getvalue()


def binary_request(elements: list[bytes]) -> tuple[bytes, dict]:
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [len(elements)],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return head + raw, {HEADER: str(len(head)), "Content-Type": "application/octet-stream"}


def json_request(count: int) -> tuple[bytes, dict]:
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [count], "data": [""] * count}]}
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


ATTACKS = {
    "50,000 1x1 PNGs (binary BYTES)": lambda: binary_request([tiny_png()] * 50_000),
    "500,000 empty elements (binary BYTES)": lambda: binary_request([b""] * 500_000),
    "500,000 empty elements (JSON BYTES)": lambda: json_request(500_000),
}


def attack(server: Server, names: list[str]) -> dict:
    import httpx

    model = httpx.get(server.url + "/models").json()["models"][0]["name"]
    url = f"{server.url}/v2/models/{model}/infer"
    for _ in range(20):  # a few ordinary requests first: the resting memory of a server that has worked
        body, headers = binary_request([tiny_png()])
        httpx.post(url, content=body, headers=headers)
    time.sleep(1)
    start = memory_mb(server.proc.pid)
    result = {"rss_start_mb": round(start["rss"], 1), "requests": []}
    for name in names:
        body, headers = ATTACKS[name]()
        with Watch(server.url, server.proc.pid) as watch:
            started = time.perf_counter()
            r = httpx.post(url, content=body, headers=headers, timeout=600)
            seconds = time.perf_counter() - started
            time.sleep(3 * POLL_S)  # a few polls after the answer
        time.sleep(1)
        now = memory_mb(server.proc.pid)
        answer = r.json()["error"] if r.status_code != 200 else f"{len(r.content):,} bytes"
        result["requests"].append(
            {
                "request": name,
                "body_bytes": len(body),
                "status": r.status_code,
                "answer": answer[:160],
                "seconds": round(seconds, 3),
                "health_slowest_ms": round(watch.slowest * 1000, 1),
                "health_failures": watch.failures,
                "rss_peak_mb": round(max(watch.peak_rss, now["rss"]), 1),
                "rss_after_mb": round(now["rss"], 1),
                "rss_hwm_mb": round(now["hwm"], 1),
            }
        )
    result["rss_end_mb"] = round(memory_mb(server.proc.pid)["rss"], 1)
    result["peak_growth_mb"] = round(max(q["rss_peak_mb"] for q in result["requests"]) - start["rss"], 1)
    result["end_growth_mb"] = round(result["rss_end_mb"] - start["rss"], 1)
    result["health_slowest_ms"] = max(q["health_slowest_ms"] for q in result["requests"])
    return result


ARENA_CODE = r"""
import json, re, sys, time, numpy as np, onnxruntime as ort
mode, path = sys.argv[1], sys.argv[2]
rss = lambda: int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024
so = ort.SessionOptions(); so.intra_op_num_threads = 1
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
so.enable_cpu_mem_arena = mode != "off"
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
ro = ort.RunOptions()
if mode == "shrink":
    ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
run = lambda x: s.run(None, {s.get_inputs()[0].name: x}, ro)
out = {}
for n in (1, 32):
    x = np.zeros((n, 1, 28, 28), np.float32)
    for _ in range(300): run(x)
    times = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(300): run(x)
        times.append((time.perf_counter() - t) / 300)
    out[f"us_per_run_batch_{n}"] = round(min(times) * 1e6, 1)
before = rss()
run(np.zeros((5000, 1, 28, 28), np.float32))
run(np.zeros((32, 1, 28, 28), np.float32))
out["rss_left_by_batch_5000_mb"] = round(rss() - before, 1)
print(json.dumps(out))
"""


def arena_comparison(model: pathlib.Path) -> dict:
    """ONNX Runtime's CPU arena on / off / on with shrinkage, each in a fresh process."""
    return {
        mode: json.loads(
            subprocess.run(
                [sys.executable, "-c", ARENA_CODE, mode, str(model)],
                check=True,
                capture_output=True,
                text=True,
                env=env_for(ROOT),
            ).stdout
        )
        for mode in ("arena (default)", "off", "shrink")
    }


def markdown(result: dict) -> str:
    lines = [
        "# zoo serve under issue 12's memory attack (127.0.0.1)",
        "",
        (
            f"{result['cpu']}, {result['cores']} CPUs; LeNet ONNX (one epoch on MNIST-small), `zoo serve "
            "--threads 1`; /health polled every 50 ms during each request; memory is the server's "
            "VmRSS. Goal: a 4xx or a bounded answer, growth under 500 MB and back within 100 MB, /health "
            "within 200 ms."
        ),
        "",
        "| server | request | status | seconds | /health slowest | RSS peak | RSS after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in result["runs"]:
        for q in run["requests"]:
            lines.append(
                f"| {run['server']} (start {run['rss_start_mb']:.0f} MB) | {q['request']} | {q['status']} | "
                f"{q['seconds']:.2f} | {q['health_slowest_ms']:.0f} ms | {q['rss_peak_mb']:.0f} MB | "
                f"{q['rss_after_mb']:.0f} MB |"
            )
    lines += ["", "| server | peak growth | growth at the end | /health slowest |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {r['server']} | {r['peak_growth_mb']:.0f} MB | {r['end_growth_mb']:.0f} MB | "
        f"{r['health_slowest_ms']:.0f} ms |"
        for r in result["runs"]
    ]
    lines += [
        "",
        (
            "ONNX Runtime's CPU memory arena, in process (LeNet, one thread): the memory one batch of "
            "5,000 leaves behind, and the best time per run. The server never runs more than "
            "--max-batch-size rows at once, which its warm-up already ran, so the arena stays on."
        ),
        "",
        "| arena | left by a batch of 5,000 | batch 1 | batch 32 |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {mode} | {a['rss_left_by_batch_5000_mb']:.0f} MB | {a['us_per_run_batch_1']} us | "
        f"{a['us_per_run_batch_32']} us |"
        for mode, a in result["arena"].items()
    ]
    lines += ["", FILE_CASES]
    return "\n".join(lines) + "\n"


FILE_CASES = (
    "Issue 20's cases for the commands that write files, walk folders and share run directories (a link to /, "
    "FIFO / device / symlink outputs, two trains into one folder, a full disk, a 10 MB class name): "
    "`benchmarks/attack_files.md`, by `python scripts/attack_files.py --before REV` (before and after in one run). "
    "Issue 20's hostile inputs to the server (a progressive JPEG of 806 scans, 16-bit 8000x8000 PNGs, header "
    "floods) and the header cap's cost: `benchmarks/attack_inputs.md`, by `python scripts/attack_inputs.py`."
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", metavar="REV", help="also attack the code of this commit (50,000 images only)")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks")
    args = ap.parse_args()
    from zoo.hardware import cpu

    names = list(ATTACKS)
    with tempfile.TemporaryDirectory(prefix="zoo-attack-") as tmp:
        tmp = pathlib.Path(tmp)
        model = lenet_onnx(tmp)
        plans = [
            ("after (defaults: --max-images 256)", ROOT, (), names),
            ("after, --max-images 1000000", ROOT, ("--max-images", "1000000"), names),
        ]
        if args.before:
            plans.append(
                (f"before ({args.before})", checkout_of(args.before, tmp / f"checkout-{args.before}"), (), names[:1])
            )
        runs = []
        for label, checkout, flags, which in plans:
            server = Server(checkout, model, *flags)
            try:
                runs.append({"server": label, **attack(server, which)})
            finally:
                server.stop()
            print(json.dumps(runs[-1]), flush=True)
        result = {"cpu": cpu().name, "cores": os.cpu_count(), "runs": runs, "arena": arena_comparison(model)}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.out / "attack.json", json.dumps(result, indent=2) + "\n")
    atomic.write_text(args.out / "attack.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
