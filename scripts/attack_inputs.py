"""Issue 20's hostile inputs to a real `zoo serve` (127.0.0.1 only), against this checkout and against the
code of an earlier commit (--before REV) in the same run: status, seconds, the server's peak resident
memory (VmHWM of a server started for the case) and the slowest /health answer while it ran.

Cases:
- a progressive JPEG of 806 scans (a flat 4000x4000 image whose last scan is repeated: about 120 KB),
  one request, then 4 at once
- a 16-bit 8000x8000 PNG (just inside the 64-megapixel limit, 124 KB), one request, then 8 at once
- a 1 MB header line, one connection, then 4 at once; 10,000 small headers
And the cost of the header-size cap on ordinary traffic (--cost-baseline REV, the commit before it): wrk,
32 clients posting MNIST PNGs to /predict of LeNet, the two servers measured in turn, --rounds times.

    python scripts/attack_inputs.py --before 861babe --cost-baseline b30ad67   # -> benchmarks/attack_inputs.*
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import pathlib
import socket
import statistics
import tempfile
import time

from attack_serve import Server, Watch, lenet_onnx, memory_mb
from bench_serve import load_wrk, mnist_pngs

from zoo import atomic
from zoo.child import checkout_of
from zoo.hardware import cpu

ROOT = pathlib.Path(__file__).resolve().parents[1]
WAIT_S = 15.0  # longer than the header timeout (10 s): what the code before did with a flood


def jpeg_bomb(scans: int = 806, side: int = 4000) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (120, 130, 140)).save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    start, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[start:end] * (scans - 10) + data[end:]  # libjpeg's script: 10 scans


def png16(side: int = 8000) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def post_all(url: str, body: bytes, content_type: str, count: int) -> dict:
    """`count` POSTs of `body` to /predict at once: their statuses, the first answer, the wall time."""
    import httpx

    def one(_):
        try:
            r = httpx.post(url + "/predict", content=body, headers={"Content-Type": content_type}, timeout=600)
            return r.status_code, r.text[:160]
        except httpx.HTTPError as e:
            return type(e).__name__, ""

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(one, range(count)))
    return {
        "statuses": [a[0] for a in answers],
        "answer": answers[0][1],
        "seconds": round(time.perf_counter() - started, 2),
    }


def send_head(port: int, head: bytes) -> dict:
    """Send `head` on a new connection; what came back within WAIT_S seconds, and the seconds until the
    server closed the connection (a kept-alive one: its keep-alive timeout, 5 s)."""
    started = time.perf_counter()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        try:
            sock.sendall(head)
            while chunk := sock.recv(65536):
                answer += chunk
        except (OSError, TimeoutError) as e:
            answer = answer or f"({type(e).__name__})".encode()
    first = answer.split(b"\r\n", 1)[0].decode("latin-1") or "(closed, no answer)"
    return {"answer": first[:80], "seconds": round(time.perf_counter() - started, 2)}


def heads_all(port: int, head: bytes, count: int) -> dict:
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(lambda _: send_head(port, head), range(count)))
    return {"answers": sorted({a["answer"] for a in answers}), "seconds": max(a["seconds"] for a in answers)}


BIG_LINE = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
MANY = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\n"


def cases() -> dict:
    bomb, big = jpeg_bomb(), png16()
    return {
        f"progressive JPEG, 806 scans ({len(bomb) // 1024} KB), 1 request": lambda s: post_all(
            s.url, bomb, "image/jpeg", 1
        ),
        "the JPEG, 4 at once": lambda s: post_all(s.url, bomb, "image/jpeg", 4),
        f"16-bit 8000x8000 PNG ({len(big) // 1024} KB), 1 request": lambda s: post_all(s.url, big, "image/png", 1),
        "the PNG, 8 at once": lambda s: post_all(s.url, big, "image/png", 8),
        "1 MB header line, 1 connection": lambda s: send_head(port_of(s), BIG_LINE),
        "1 MB header lines, 4 connections at once": lambda s: heads_all(port_of(s), BIG_LINE, 4),
        "10,000 headers": lambda s: send_head(port_of(s), MANY),
    }


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def attack(code: pathlib.Path, model: pathlib.Path) -> list[dict]:
    rows = []
    for name, case in cases().items():
        server = Server(code, model)  # a fresh server: VmHWM is this case's peak
        try:
            rss = memory_mb(server.proc.pid)["rss"]
            with Watch(server.url, server.proc.pid) as watch:
                outcome = case(server)
            peak = memory_mb(server.proc.pid)["hwm"]
        finally:
            server.stop()
        row = {"case": name, **outcome, "rss_start_mb": round(rss), "rss_peak_mb": round(peak)}
        row["health_slowest_ms"] = round(watch.slowest * 1000)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads) so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def header_cost(baseline: pathlib.Path, model: pathlib.Path, rounds: int, seconds: float) -> dict:
    """LeNet /predict on the code before the header cap and on this checkout, in turn: requests/s, and the
    server's CPU time per request (less moved by other work on the machine than requests/s)."""
    bodies = mnist_pngs(64)
    servers = {"before the cap": Server(baseline, model), "with the cap": Server(ROOT, model)}
    rps: dict[str, list[float]] = {name: [] for name in servers}
    cpu_us: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for _ in range(rounds):
            for name, server in servers.items():
                used = cpu_seconds(server.proc.pid)
                load = load_wrk(server.url, "/predict", bodies, "image/png", 32, seconds)
                used = cpu_seconds(server.proc.pid) - used
                rps[name].append(round(load["rps"], 1))
                cpu_us[name].append(round(used / load["requests"] * 1e6, 1))
    finally:
        for server in servers.values():
            server.stop()
    ratio = {name: statistics.median(v) for name, v in rps.items()}
    per_request = {name: statistics.median(v) for name, v in cpu_us.items()}
    return {
        "rps": rps,
        "cpu_us_per_request": cpu_us,
        "ratio_of_medians": round(ratio["with the cap"] / ratio["before the cap"], 3),
        "cpu_ratio_of_medians": round(per_request["with the cap"] / per_request["before the cap"], 3),
    }


def markdown(r: dict) -> str:
    c = r["cpu"]
    lines = [
        "# Issue 20's hostile inputs to `zoo serve` (127.0.0.1)",
        "",
        f"{c['name']}, {c['cores']} CPUs, flags {' '.join(c['flags'])}; {r['date']}; load average "
        f"{r['load'][0]:.1f} at the start, {r['load'][1]:.1f} at the end (other work shared the CPU); "
        f"`python scripts/attack_inputs.py --before {r['before_rev']} --cost-baseline {r['cost_baseline_rev']}`. "
        "LeNet ONNX, `zoo serve --threads 1`, a fresh server per case (peak RSS: its VmHWM). Seconds: until "
        "every answer came, or for the header cases until the server closed the connection (5 s: a kept-alive "
        "one's timeout). The header blocks were sent at once: the code before answered them, after buffering "
        "them whole (the issue's 102 MB a connection was measured with headers sent slowly).",
        "",
        "| case | code | outcome | seconds | RSS start | RSS peak | /health slowest |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for after, before in zip(r["after"], r["before"]):
        for label, row in (("before", before), ("after", after)):
            outcome = row.get("statuses") or row.get("answers") or row.get("answer")
            if "statuses" in row and row["answer"]:
                outcome = f"{row['statuses']}: {row['answer'][:90]}"
            lines.append(
                f"| {row['case']} | {label} | {str(outcome).replace('|', '/')} | {row['seconds']} | "
                f"{row['rss_start_mb']} MB | {row['rss_peak_mb']} MB | {row['health_slowest_ms']} ms |"
            )
    cost = r["header_cost"]
    lines += [
        "",
        "The header-size cap's cost on ordinary traffic (wrk, 32 clients, LeNet /predict, "
        f"{r['seconds']:g} s each, the two servers in turn): requests/s before the cap "
        f"{cost['rps']['before the cap']}, with it {cost['rps']['with the cap']}; "
        f"ratio of the medians **{cost['ratio_of_medians']}**. The server's CPU time per request (microseconds): "
        f"before {cost['cpu_us_per_request']['before the cap']}, with it {cost['cpu_us_per_request']['with the cap']}; "
        f"ratio of the medians **{cost['cpu_ratio_of_medians']}** (above 1: the cap costs CPU).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="REV", required=True, help="the code before issue 20's fixes")
    ap.add_argument("--cost-baseline", metavar="REV", required=True, help="the commit before the header cap")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="zoo-attack-inputs-") as tmp:
        tmp = pathlib.Path(tmp)
        model = lenet_onnx(tmp)
        before = checkout_of(args.before, tmp / "before-code")
        baseline = checkout_of(args.cost_baseline, tmp / "baseline-code")
        result = {
            "cpu": cpu().to_dict(),
            "date": time.strftime("%Y-%m-%d"),
            "before_rev": args.before,
            "cost_baseline_rev": args.cost_baseline,
            "seconds": args.seconds,
            "after": attack(ROOT, model),
            "before": attack(before, model),
            "header_cost": header_cost(baseline, model, args.rounds, args.seconds),
        }
    result["load"] = [load_start, os.getloadavg()[0]]
    atomic.write_text(args.out / "attack_inputs.json", json.dumps(result, indent=1) + "\n")
    atomic.write_text(args.out / "attack_inputs.md", markdown(result))


if __name__ == "__main__":
    main()
