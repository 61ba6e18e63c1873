"""OpenVINO's CPU pinning with several model processes on one machine -> benchmarks/pinning.{json,md}.

OpenVINO pins the threads of an inference to CPUs while it runs (ENABLE_CPU_PINNING, on by default on
Linux), counting from the first CPU of the process's mask. Where several processes each run fewer threads
than the machine has CPUs (Ray actors of one CPU, `zoo serve --workers N`), they all pin to the same first
CPUs. infer.backend_ov therefore pins only where the threads take every CPU. This measures why:

    2 x 1 thread     two processes at once, one inference thread each (2 CPUs: the Ray actors' case)
    1 x all threads  one process, a thread per usable CPU (local classify's and one server's case)

each with pinning on, off, and as cnnzoo now decides (infer.load with the threads given). Every process
compiles resnet18 int8 (`zoo export --int8`, random seeded weights) with OpenVINO, warms up, waits for the
others, then infers batches of 32 for --seconds; the rate is all processes' images over the time. The
configurations alternate over --reps; medians; ratios against pinning on, measured in the same run.

    python scripts/bench_pinning.py [--reps 3] [--seconds 8] [--model PATH.int8.onnx]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from zoo import atomic  # noqa: E402
from zoo.hardware import BENCHMARK_FLAGS, cpu, usable_cpus  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "hymenoptera"
BATCH = 32
PINNINGS = ("on", "off", "cnnzoo")

# One model process: compile, warm up, say "ready", wait for "go" on stdin, infer for SECONDS, print JSON.
WORKER = """
import json, sys, time
import numpy as np
model, threads, pinning, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
if pinning == "cnnzoo":
    import infer
    p = infer.load(model, backend="openvino", precision="int8", threads=threads)
    compiled, shape = p.compiled, p.card.input_shape
else:
    import openvino as ov
    from infer.backend_ov import _core
    from zoo.card import ModelCard
    compiled = _core().compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": pinning == "on"})
    shape = [3, 224, 224]
request = compiled.create_infer_request()
x = np.random.default_rng(0).standard_normal((%d, *shape)).astype(np.float32)
for _ in range(2):
    request.infer({0: x})
print("ready", flush=True)
sys.stdin.readline()
start, cpu0, batches = time.perf_counter(), time.process_time(), 0
while time.perf_counter() - start < seconds:
    request.infer({0: x})
    batches += 1
print(json.dumps({"images": batches * %d, "seconds": time.perf_counter() - start,
                  "cpu_s": time.process_time() - cpu0, "pinned": bool(compiled.get_property("ENABLE_CPU_PINNING"))}))
""" % (BATCH, BATCH)


def measure(model: pathlib.Path, processes: int, threads: int, pinning: str, seconds: float) -> dict:
    """`processes` model processes at once; their images per second together."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", WORKER, str(model), str(threads), pinning, str(seconds)]
    procs = [
        subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(processes)
    ]
    load = os.getloadavg()[0]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a model process did not start: exit {p.wait()}")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        out = [json.loads(p.stdout.read().strip().splitlines()[-1]) for p in procs]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
            p.wait()
    wall = max(o["seconds"] for o in out)
    return {
        "img_s": sum(o["images"] for o in out) / wall,
        "cpu_share": sum(o["cpu_s"] for o in out) / wall,  # CPUs' worth of the processes' own CPU time
        "pinned": [o["pinned"] for o in out],
        "load_start": round(load, 2),
    }


def int8_model(work: pathlib.Path) -> pathlib.Path:
    from bench_infer import export_int8, make_run

    run, _ = make_run("resnet18", work, fp16=False)
    made = export_int8(run, PHOTOS / "train" if PHOTOS.is_dir() else None)
    if not made["ok"]:
        raise RuntimeError(f"resnet18 int8 export failed: {made.get('error')}")
    return run / "model.int8.onnx"


def markdown(report: dict) -> str:
    c = report["machine"]["cpu"]
    flags = ", ".join(f"{f}: {'yes' if f in c['flags'] else 'no'}" for f in BENCHMARK_FLAGS)
    lines = [
        "# OpenVINO's CPU pinning, one model process or several",
        "",
        f"Measured {report['date']} by `python scripts/bench_pinning.py` on {c['name']} ({c['cores']} usable "
        f"CPUs; {flags}), OpenVINO {report['openvino']}. resnet18 int8, batches of {BATCH}, {report['seconds']:g} s "
        f"per measurement, medians of {report['reps']} alternated runs. Load average {report['machine']['load_start']} "
        f"at the start, {report['machine']['load_end']} at the end.",
        "",
        "| processes x threads | pinning | img/s | ratio to pinning on | CPUs busy | pinned |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for case, rows in report["table"].items():
        base = rows["on"]["img_s"]
        for pinning, row in rows.items():
            lines.append(
                f"| {case} | {pinning} | {row['img_s']:.1f} | {row['img_s'] / base:.2f}x | {row['cpu_share']:.2f} | "
                f"{row['pinned']} |"
            )
    lines += [
        "",
        "- pinning on: OpenVINO's default; off: ENABLE_CPU_PINNING false; cnnzoo: what infer.load decides now "
        "(infer.backend_ov: pin only where the threads take every CPU of the process).",
        "- CPUs busy: the processes' CPU time over the wall time. Several processes pinned count from the same "
        "first CPU, so they share it while the others idle.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--model", type=pathlib.Path, help="a resnet18 model.int8.onnx (default: export one)")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks")
    args = ap.parse_args()
    import openvino

    cpus = len(usable_cpus())
    cases = {"2 x 1 thread": (2, 1), f"1 x {cpus} threads": (1, cpus)}
    machine = {"cpu": cpu().to_dict(), "load_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench-pinning-") as tmp:
        model = args.model or int8_model(pathlib.Path(tmp))
        runs: dict = {case: {p: [] for p in PINNINGS} for case in cases}
        for rep in range(args.reps):
            order = [(case, p) for case in cases for p in PINNINGS]
            for case, pinning in order if rep % 2 == 0 else order[::-1]:
                r = measure(model, *cases[case], pinning, args.seconds)
                runs[case][pinning].append(r)
                print(f"{case}, pinning {pinning}: {r}", flush=True)
    machine["load_end"] = round(os.getloadavg()[0], 2)
    table = {
        case: {
            p: {
                "img_s": statistics.median(r["img_s"] for r in rows),
                "cpu_share": statistics.median(r["cpu_share"] for r in rows),
                "pinned": rows[0]["pinned"],
            }
            for p, rows in by.items()
        }
        for case, by in runs.items()
    }
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "openvino": openvino.__version__.split("-")[0],
        "reps": args.reps,
        "seconds": args.seconds,
        "table": table,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.out / "pinning.json", json.dumps(report, indent=1) + "\n")
    atomic.write_text(args.out / "pinning.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
