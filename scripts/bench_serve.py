"""`zoo serve` under load, on 127.0.0.1 only, bounded in time and count: the issue's four measurements.

1. LeNet ONNX, 32 concurrent clients posting 28x28 MNIST PNGs to /predict: requests/s and latency
   percentiles, against the same model's in-process batched throughput (decode + preprocess + predict
   in batches of 32, one process, no HTTP), measured in the same run. Goal: ratio >= 0.5.
2. resnet18 ONNX, 16 concurrent clients posting real photos (hymenoptera): dynamic batching
   (--max-batch-size 32) against --max-batch-size 1. Goal: ratio >= 2.
3. 10,000 requests, good and bad mixed (every kind of bad input the server must refuse): zero 5xx,
   zero dropped connections, the server alive after.
4. LitServe (if `import litserve` works) serving the same LeNet ONNX file with the same batching
   settings, both fed multipart uploads by the same load generator: the throughput ratio.

The load generator is `wrk` (C, one thread, little CPU) where installed, else an httpx async client in
this process; the JSON says which. Servers run as `python -m zoo serve` subprocesses at --log-level
warning (the per-request info line is not what is measured). Weights are random: throughput does not
depend on them.

    python scripts/bench_serve.py                      # -> benchmarks/serve.json, benchmarks/serve.md
    python scripts/bench_serve.py --duration 5 --mixed 2000     # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from zoo import atomic
from zoo.child import free_port

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

BOUNDARY = "zoo-bench-boundary"


# ---- models and inputs -----------------------------------------------------------------------------


def export(name: str, out: pathlib.Path, **card_kwargs) -> pathlib.Path:
    """A run directory for `name` with random weights, exported to ONNX; the .onnx path."""
    import torch

    from export.onnx import export_run
    from zoo import rundir
    from zoo.card import ModelCard
    from zoo.models import create

    card = ModelCard.for_model(name, **card_kwargs)
    torch.manual_seed(0)
    model = create(card.architecture, num_classes=card.num_classes, in_channels=card.in_channels)
    run = out / f"{card.architecture}-bench"
    run.mkdir(parents=True, exist_ok=True)
    rundir.save_weights(run / rundir.WEIGHTS, model)
    card.save(run / rundir.CARD)
    return export_run(run, log=None)["onnx"]


def mnist_pngs(count: int) -> list[bytes]:
    from PIL import Image

    from zoo.data.mnist import read_idx

    images = read_idx(SHARED / "datasets/mnist/train-images-idx3-ubyte.gz")[:count]
    out = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def photos(count: int) -> list[bytes]:
    files = sorted((SHARED / "datasets/hymenoptera/val").glob("*/*.jpg"))
    step = max(1, len(files) // count)
    return [f.read_bytes() for f in files[::step][:count]]


def multipart(data: bytes, content_type: str = "image/png") -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="image"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


# ---- servers ---------------------------------------------------------------------------------------


class Process:
    """A server subprocess in its own process group; its output collected on a thread."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def wait_for(self, pattern: str, timeout: float = 300) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"server never printed {pattern!r}:\n{''.join(self.lines)[-3000:]}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait; the exit code (SIGKILL to the group if it will not stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        try:  # what the server started and left behind (LitServe's workers outlive their parent)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.reader.join(5)
        return self.proc.returncode


def wait_ready(url: str, path: str, proc: Process, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{url} never became ready:\n{''.join(proc.lines)[-3000:]}")


def zoo_serve(model: pathlib.Path, *options) -> tuple[Process, str]:
    p = Process(
        [sys.executable, "-m", "zoo", "serve", str(model), "--port", "0", "--log-level", "warning", *map(str, options)]
    )
    url = p.wait_for(r"on (http://127\.0\.0\.1:\d+)").group(1)
    wait_ready(url, "/v2/health/ready", p)
    return p, url


try:  # the comparison server; LitServe pickles its API into a worker process, so the class lives here
    import litserve
except ImportError:
    litserve = None

if litserve is not None:

    class LitClassifier(litserve.LitAPI):
        """The same job as zoo serve's /predict, in LitServe: multipart image -> preprocess -> top-5."""

        def __init__(self, model: str, **kwargs):
            super().__init__(**kwargs)
            self.model = model

        def setup(self, device):
            import infer

            self.predictor = infer.load(self.model)

        def decode_request(self, request):
            from zoo.data.preprocess import preprocess

            return preprocess(request["file"].file.read(), self.predictor.card)

        def batch(self, inputs):
            return np.stack(inputs)

        def predict(self, x):
            return self.predictor.predict(x)

        def unbatch(self, output):
            return list(output)

        def encode_response(self, logits):
            from zoo.answer import answers

            return {"predictions": answers(logits[None], self.predictor.card.class_names)}


def litserve_server(model: str, port: int, max_batch_size: int, max_delay_ms: float) -> None:
    """Run LitServe on `model` (the mode `--litserve-server` starts in a subprocess)."""
    api = LitClassifier(model, max_batch_size=max_batch_size, batch_timeout=max_delay_ms / 1000)
    litserve.LitServer(api, accelerator="cpu", workers_per_device=1).run(
        host="127.0.0.1", port=port, generate_client_file=False, log_level="warning"
    )


# ---- load generators -------------------------------------------------------------------------------

WRK_SCRIPT = """
local bodies, n, i = {}, 0, 0
init = function(args)
  n = tonumber(args[2])
  for k = 1, n do
    local f = io.open(args[1] .. "/" .. (k - 1) .. ".bin", "rb"); bodies[k] = f:read("*all"); f:close()
  end
end
request = function()
  i = i % n + 1
  return wrk.format("POST", "__PATH__", {["Content-Type"] = "__CONTENT_TYPE__"}, bodies[i])
end
done = function(s, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d %d %.1f %.1f %.1f %.1f\\n", s.requests, s.duration,
    s.errors.connect, s.errors.read, s.errors.write, s.errors.status, s.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def load_wrk(url: str, path: str, bodies: list[bytes], content_type: str, clients: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        for i, b in enumerate(bodies):
            (pathlib.Path(tmp) / f"{i}.bin").write_bytes(b)
        script = pathlib.Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT.replace("__PATH__", path).replace("__CONTENT_TYPE__", content_type))
        run = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{clients}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                str(script),
                url,
                "--",
                tmp,
                str(len(bodies)),
            ],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0 or "RESULT" not in run.stdout:
            raise RuntimeError(f"wrk failed: {run.stdout[-2000:]}{run.stderr[-2000:]}")
        out = run.stdout
    n, us, connect, read, write, status, timeout, p50, p90, p99, worst = re.search(r"RESULT (.*)", out).group(1).split()
    return {
        "requests": int(n),
        "seconds": int(us) / 1e6,
        "rps": int(n) / (int(us) / 1e6),
        "p50_ms": float(p50) / 1000,
        "p90_ms": float(p90) / 1000,
        "p99_ms": float(p99) / 1000,
        "max_ms": float(worst) / 1000,
        "non_2xx": int(status),
        "socket_errors": int(connect) + int(read) + int(write) + int(timeout),
        "generator": "wrk",
    }


def load_httpx(url: str, path: str, bodies: list[bytes], content_type: str, clients: int, seconds: float) -> dict:
    import httpx

    latencies, bad, errors = [], 0, 0

    async def client(c, k):
        nonlocal bad, errors
        i = k
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                r = await c.post(path, content=bodies[i % len(bodies)], headers={"Content-Type": content_type})
                bad += not r.is_success
            except httpx.TransportError:
                errors += 1
            latencies.append(time.perf_counter() - t)
            i += clients

    async def run():
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=clients)) as c:
            await asyncio.gather(*(client(c, k) for k in range(clients)))

    start = time.perf_counter()
    end = start + seconds
    asyncio.run(run())
    took = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "requests": len(ms),
        "seconds": took,
        "rps": len(ms) / took,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "non_2xx": bad,
        "socket_errors": errors,
        "generator": "httpx",
    }


def load(*args) -> dict:
    return (load_wrk if shutil.which("wrk") else load_httpx)(*args)


# ---- measurements ----------------------------------------------------------------------------------


def in_process(model: pathlib.Path, bodies: list[bytes], batch: int, seconds: float, decode: bool = True) -> dict:
    """Images/s of decode + preprocess + predict in batches, in this process (no HTTP), and of the model
    alone on ready batches."""
    import infer
    from zoo.data.preprocess import preprocess

    predictor = infer.load(model)
    card = predictor.card
    ready = np.stack([preprocess(b, card) for b in bodies[:batch]])
    predictor.predict(ready)  # warm-up
    out = {}
    steps = {
        "decode_and_predict": lambda i: predictor.predict(
            np.stack([preprocess(b, card) for b in (bodies * 2)[i % len(bodies) :][:batch]])
        ),
        "predict_only": lambda i: predictor.predict(ready),
    }
    if not decode:
        del steps["decode_and_predict"]
    for what, step in steps.items():
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step(n)
            n += batch
        out[f"{what}_images_per_s"] = n / (time.perf_counter() - start)
    return out


def mixed_requests(url: str, name: str, total: int, clients: int, max_body: int) -> dict:
    """`total` requests cycling through good and bad kinds; statuses, 5xx, dropped connections."""
    import httpx
    from PIL import Image

    digits = mnist_pngs(8)
    buf = io.BytesIO()
    Image.fromarray(np.asarray(Image.open(io.BytesIO(digits[0])).resize((280, 280)))).save(buf, "JPEG")
    photo = buf.getvalue()
    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, "PNG")
    bomb = buf.getvalue()
    x = np.zeros((1, 1, 28, 28), np.float32).ravel().tolist()
    infer_path = f"/v2/models/{name}/infer"

    def v2(**over):
        inp = {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": x} | over
        return json.dumps({"inputs": [inp]}).encode()

    png, js = {"Content-Type": "image/png"}, {"Content-Type": "application/json"}
    kinds = [  # (kind, expected status, path, body, headers)
        ("good png", 200, "/predict", digits[1], png),
        ("good multipart", 200, "/predict", multipart(digits[2]), {"Content-Type": MULTIPART}),
        ("good v2 fp32", 200, infer_path, v2(), js),
        (
            "good v2 bytes",
            200,
            infer_path,
            v2(shape=[1], datatype="BYTES", data=[base64.b64encode(digits[3]).decode()]),
            js,
        ),
        ("empty body", 400, "/predict", b"", png),
        ("not an image", 400, "/predict", b"hello, world", png),
        ("truncated jpeg", 400, "/predict", photo[: len(photo) // 2], png),
        ("decompression bomb", 400, "/predict", bomb, png),
        ("body too large", 413, "/predict", b"\0" * (max_body + 1), png),
        ("wrong content type", 415, "/predict", digits[4], {"Content-Type": "text/plain"}),
        ("v2 wrong shape", 400, infer_path, v2(shape=[1, 3, 28, 28]), js),
        ("v2 wrong datatype", 400, infer_path, v2(datatype="INT8"), js),
        ("v2 wrong count", 400, infer_path, v2(data=x[:-1]), js),
        ("malformed json", 400, infer_path, b'{"inputs": [{', js),
        ("unknown model", 404, "/v2/models/nope/infer", v2(), js),
        ("bad top_k", 422, "/predict?top_k=-1", digits[5], png),
    ]
    statuses: dict[str, dict[str, int]] = {k[0]: {} for k in kinds}
    dropped = unexpected = 0
    counter = iter(range(total))

    async def client(c):
        nonlocal dropped, unexpected
        for i in counter:
            kind, want, path, body, headers = kinds[i % len(kinds)]
            try:
                r = await c.post(path, content=body, headers=headers)
                status = r.status_code
                r.json()  # every answer is JSON
            except httpx.TransportError:
                dropped += 1
                status = "dropped"
            except ValueError:
                status = f"{status} (not JSON)"
            statuses[kind][str(status)] = statuses[kind].get(str(status), 0) + 1
            unexpected += status != want

    async def run():
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=clients)) as c:
            await asyncio.gather(*(client(c) for _ in range(clients)))

    start = time.perf_counter()
    asyncio.run(run())
    took = time.perf_counter() - start
    five = sum(n for s in statuses.values() for k, n in s.items() if k.startswith("5"))
    alive = (
        httpx.get(url + "/v2/health/live").status_code == 200
        and httpx.post(url + "/predict", content=digits[6], headers=png).status_code == 200
    )
    metrics = httpx.get(url + "/metrics").text
    server_5xx = sum(
        float(v)
        for route, v in re.findall(  # (a 503 from the readiness probe while warming up
            r'^zoo_requests_total\{[^}]*route="([^"]*)",status="5\d\d"[^}]*\} (\S+)$', metrics, re.M
        )  # is not one)
        if "/health" not in route
    )
    return {
        "requests": total,
        "seconds": took,
        "rps": total / took,
        "kinds": len(kinds),
        "statuses": statuses,
        "5xx": five,
        "5xx_counted_by_server": server_5xx,
        "dropped_connections": dropped,
        "unexpected_status": unexpected,
        "alive_after": alive,
    }


def load_average() -> float:
    return os.getloadavg()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=15, help="seconds of load per measurement")
    ap.add_argument("--mixed", type=int, default=10_000, help="requests in the mixed good/bad run")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks")
    ap.add_argument(
        "--litserve-server", nargs=4, metavar=("MODEL", "PORT", "BATCH", "DELAY_MS"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.litserve_server:
        model, port, batch, delay = args.litserve_server
        return litserve_server(model, int(port), int(batch), float(delay))

    import httpx
    import onnxruntime
    import uvicorn

    seconds = args.duration
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "uvicorn": uvicorn.__version__,
            "load_average_start": load_average(),
            "generator": "wrk -t1" if shutil.which("wrk") else "httpx (in the benchmark process)",
        },
        "duration_s": seconds,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        lenet = export("lenet", tmp)
        digits = mnist_pngs(256)

        # 1. LeNet: 32 clients against the in-process batched throughput, with the defaults (one process,
        #    5 ms batching delay) and with two worker processes (a shorter delay: 16 clients per process
        #    never fill a batch of 32, so each batch would wait out the whole delay)
        base = in_process(lenet, digits, 32, min(seconds, 10))
        configs = {"defaults": [], "workers_2": ["--workers", 2, "--max-delay-ms", 1]}
        served = {}
        for label, options in configs.items():
            server, url = zoo_serve(lenet, *options)
            try:
                served[label] = load(url, "/predict", digits, "image/png", 32, seconds)
            finally:
                code = server.stop()
            served[label].update(
                options=" ".join(map(str, options)) or "(defaults)",
                exit_code_after_sigterm=code,
                ratio=served[label]["rps"] / base["decode_and_predict_images_per_s"],
            )
            print(
                f"lenet {label}: {served[label]['rps']:.0f} req/s (p99 {served[label]['p99_ms']:.1f} ms) vs "
                f"in-process {base['decode_and_predict_images_per_s']:.0f} img/s: {served[label]['ratio']:.2f}x",
                flush=True,
            )
        best = max(served.values(), key=lambda r: r["rps"])
        result["lenet_32_clients"] = {
            "server": best,
            "configurations": served,
            "in_process": base,
            "ratio": best["ratio"],
            "goal": 0.5,
        }

        # 4. LitServe, same model and batching, multipart uploads to both
        bodies = [multipart(d) for d in digits]
        if litserve is None:
            result["litserve"] = {"skipped": "litserve is not installed (pip install litserve)"}
        else:
            server, url = zoo_serve(lenet)
            try:
                ours = load(url, "/predict", bodies, MULTIPART, 32, seconds)
            finally:
                server.stop()
            port = free_port()
            lit = Process(
                [
                    sys.executable,
                    str(pathlib.Path(__file__).resolve()),
                    "--litserve-server",
                    str(lenet),
                    str(port),
                    "32",
                    "5",
                ]
            )
            try:
                wait_ready(f"http://127.0.0.1:{port}", "/health", lit)
                theirs = load(f"http://127.0.0.1:{port}", "/predict", bodies, MULTIPART, 32, seconds)
            finally:
                lit.stop()
            result["litserve"] = {
                "version": litserve.__version__,
                "zoo_serve": ours,
                "litserve": theirs,
                "ratio": ours["rps"] / theirs["rps"],
            }
            print(
                f"litserve: zoo serve {ours['rps']:.0f} req/s vs LitServe {theirs['rps']:.0f} req/s: "
                f"{result['litserve']['ratio']:.2f}x",
                flush=True,
            )

        # 3. 10,000 mixed good and bad requests
        server, url = zoo_serve(lenet, "--max-body-mb", 1, "--max-image-pixels", 1_000_000)
        try:
            name = httpx.get(url + "/models").json()["models"][0]["name"]
            mixed = mixed_requests(url, name, args.mixed, 32, 2**20)
        finally:
            code = server.stop()
        mixed["exit_code_after_sigterm"] = code
        result["mixed_good_and_bad"] = mixed
        print(
            f"mixed: {mixed['requests']} requests, 5xx {mixed['5xx']}, dropped {mixed['dropped_connections']}, "
            f"alive {mixed['alive_after']}",
            flush=True,
        )

        # 2. resnet18: dynamic batching against --max-batch-size 1
        resnet = export("resnet18", tmp, num_classes=2, class_names=["ants", "bees"])
        images = photos(32)
        runs = {}
        for label, batch in (("dynamic_batching", 32), ("max_batch_size_1", 1)):
            server, url = zoo_serve(resnet, "--max-batch-size", batch)
            try:
                runs[label] = load(url, "/predict", images, "image/jpeg", 16, seconds)
            finally:
                code = server.stop()
            runs[label]["exit_code_after_sigterm"] = code
        ratio = runs["dynamic_batching"]["rps"] / runs["max_batch_size_1"]["rps"]
        ceiling = {
            f"batch_{b}": in_process(resnet, images, b, min(seconds, 8), decode=False)["predict_only_images_per_s"]
            for b in (1, 16)
        }  # what batching buys the model alone on this CPU, without HTTP
        result["resnet18_16_clients"] = {
            **runs,
            "ratio": ratio,
            "goal": 2.0,
            "in_process_model_only": ceiling,
            "in_process_batching_gain": ceiling["batch_16"] / ceiling["batch_1"],
        }
        print(
            f"resnet18: batched {runs['dynamic_batching']['rps']:.1f} req/s vs batch 1 "
            f"{runs['max_batch_size_1']['rps']:.1f} req/s: {ratio:.2f}x",
            flush=True,
        )
    result["machine"]["load_average_end"] = load_average()

    args.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.out / "serve.json", json.dumps(result, indent=2) + "\n")
    atomic.write_text(args.out / "serve.md", markdown(result))
    print(f"wrote {args.out / 'serve.json'} and {args.out / 'serve.md'}")


def markdown(r: dict) -> str:
    m = r["machine"]
    le, rn, mx = r["lenet_32_clients"], r["resnet18_16_clients"], r["mixed_good_and_bad"]
    lines = [
        "# zoo serve under load (127.0.0.1)",
        "",
        f"{m['cpus']} CPUs, onnxruntime {m['onnxruntime']}, uvicorn {m['uvicorn']}, load generator "
        f"{m['generator']}, {r['duration_s']:.0f} s per run, load average {m['load_average_start']:.1f} at the "
        f"start and {m['load_average_end']:.1f} at the end (the server and the load generator share the 2 cores). "
        "Random weights; servers at "
        "--log-level warning, default --max-delay-ms 5.",
        "",
        "| measurement | zoo serve | baseline | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| LeNet ONNX, 32 clients, PNG to /predict, `zoo serve {c['options']}` | {c['rps']:.0f} req/s, p50 "
            f"{c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms | in-process decode + predict, batches of 32: "
            f"{le['in_process']['decode_and_predict_images_per_s']:.0f} img/s (model alone "
            f"{le['in_process']['predict_only_images_per_s']:.0f} img/s) | {c['ratio']:.2f}x | >= 0.5x |"
            for c in le["configurations"].values()
        ),
        f"| resnet18 ONNX, 16 clients, photos to /predict | dynamic batching: "
        f"{rn['dynamic_batching']['rps']:.1f} req/s, p99 {rn['dynamic_batching']['p99_ms']:.0f} ms | "
        f"--max-batch-size 1: {rn['max_batch_size_1']['rps']:.1f} req/s, p99 "
        f"{rn['max_batch_size_1']['p99_ms']:.0f} ms | {rn['ratio']:.2f}x | >= 2x |",
        f"| resnet18 ONNX in process, model alone (the most batching can give here) | batch 16: "
        f"{rn['in_process_model_only']['batch_16']:.1f} img/s | batch 1: "
        f"{rn['in_process_model_only']['batch_1']:.1f} img/s | {rn['in_process_batching_gain']:.2f}x | |",
        f"| {mx['requests']:,} requests, {mx['kinds']} kinds good and bad, 32 clients | 5xx: {mx['5xx']}, dropped "
        f"connections: {mx['dropped_connections']}, unexpected statuses: {mx['unexpected_status']}, alive after: "
        f"{'yes' if mx['alive_after'] else 'NO'} ({mx['rps']:.0f} req/s) | | | 0, 0, alive |",
    ]
    ls = r.get("litserve", {})
    if "ratio" in ls:
        lines.append(
            f"| LeNet ONNX, 32 clients, multipart to /predict, vs LitServe {ls['version']} (same batch "
            f"32 / 5 ms) | {ls['zoo_serve']['rps']:.0f} req/s, p99 {ls['zoo_serve']['p99_ms']:.1f} ms | "
            f"LitServe {ls['litserve']['rps']:.0f} req/s, p99 {ls['litserve']['p99_ms']:.1f} ms | "
            f"{ls['ratio']:.2f}x | reported |"
        )
    else:
        lines.append(f"| vs LitServe | {ls.get('skipped', 'not run')} | | | reported |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
