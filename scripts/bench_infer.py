"""Inference benchmark: torch eager against ONNX Runtime on this CPU, `zoo classify` end to end, and the
achieved GFLOP/s of resnet50 against this machine's measured matrix-multiply peak. All in one run, so
the ratios compare like with like.

    python scripts/bench_infer.py                 # -> benchmarks/infer.json, benchmarks/infer.md
    python scripts/bench_infer.py --models lenet resnet18 --classify-images 200   # a quick look

Weights are random (throughput does not depend on them). Each (model, batch) is timed after warm-up
for at least --min-time seconds and 3 batches; the median batch time is reported. Where a CUDA device
is visible, the torch CUDA backend is also timed in fp32 and fp16 at batch 1, 32 and 256.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo import atomic, rundir  # noqa: E402
from zoo.card import ModelCard  # noqa: E402

MODELS = ["lenet", "alexnet", "vgg16", "googlenet", "resnet18", "resnet50"]
HEADLINE = ("resnet18", 32)  # ONNX Runtime / torch eager, goal >= 1.2
FLOPS_MODEL = ("resnet50", 32)


def timed(fn, min_time: float, min_runs: int = 3, warmup: int = 1) -> float:
    """Median seconds per call of fn()."""
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def matmul_peak(n: int = 4096, repeats: int = 3) -> dict:
    """fp32 GFLOP/s of torch.mm on n x n matrices: the best of `repeats`."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b), 0, 1, 0) for _ in range(repeats))
    return {"n": n, "seconds": best, "gflops": 2 * n**3 / best / 1e9}


def forward_flops(model, x) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops()


def bench_cpu(names, batches, min_time, threads, workdir) -> list[dict]:
    import torch

    from export.onnx import export_model
    from infer.backend_ort import OrtPredictor
    from zoo.models import create

    rows = []
    for name in names:
        card = ModelCard.for_model(name)
        torch.manual_seed(0)
        model = create(card.architecture).eval()
        path = workdir / f"{card.architecture}.onnx"
        export_model(model, card, path, log=None)
        ort = OrtPredictor(path, device="cpu", threads=threads)
        for batch in batches:
            x = np.random.default_rng(0).standard_normal((batch, *card.input_shape)).astype(np.float32)
            xt = torch.from_numpy(x)
            with torch.inference_mode():
                t_torch = timed(lambda: model(xt), min_time)
            t_ort = timed(lambda: ort.predict(x), min_time)
            row = {"model": card.architecture, "batch": batch, "input": card.input_shape,
                   "torch_ms": t_torch * 1e3, "onnxruntime_ms": t_ort * 1e3,
                   "torch_img_s": batch / t_torch, "onnxruntime_img_s": batch / t_ort,
                   "speedup": t_torch / t_ort}
            if (card.architecture, batch) == (FLOPS_MODEL[0], FLOPS_MODEL[1]):
                row["flops"] = forward_flops(model, xt)
            rows.append(row)
            print(f"{card.architecture:10s} batch {batch:3d}: torch {t_torch * 1e3:9.1f} ms  "
                  f"onnxruntime {t_ort * 1e3:9.1f} ms  x{t_torch / t_ort:.2f}", flush=True)
        del model, ort
    return rows


def make_jpegs(shared: pathlib.Path, out: pathlib.Path, count: int) -> None:
    """`count` JPEGs in out/{ants,bees}/: hymenoptera photos, each a different random crop."""
    from PIL import Image

    photos = sorted((shared / "datasets" / "hymenoptera").glob("*/*/*.jp*g"))
    rng = np.random.default_rng(0)
    for i in range(count):
        src = photos[i % len(photos)]
        img = Image.open(src).convert("RGB")
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.6, 1)), int(h * rng.uniform(0.6, 1))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        dst = out / src.parent.name / f"{i:04d}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        img.crop((left, top, left + cw, top + ch)).save(dst, quality=90)


def bench_classify(shared, count, threads, workdir, model_img_s: float | None) -> dict:
    import torch

    from export.onnx import export_run
    from zoo.models import create

    name = HEADLINE[0]
    run = workdir / f"{name}-classify"
    run.mkdir()
    torch.manual_seed(0)
    rundir.save_weights(run / rundir.WEIGHTS, create(name, num_classes=2))
    ModelCard.for_model(name, class_names=["ants", "bees"]).save(run / rundir.CARD)
    export_run(run, log=None)
    images = workdir / "jpegs"
    make_jpegs(shared, images, count)
    cmd = [sys.executable, "-m", "zoo", "classify", str(run), str(images), "--backend", "onnxruntime",
           "--batch-size", str(HEADLINE[1]), "--output", str(workdir / "results.jsonl")]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    wall = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(f"zoo classify failed: {out.stderr}")
    m = re.search(r"(\d+) images in ([\d.]+) s \(([\d.]+) img/s", out.stderr)
    n, seconds, rate = int(m.group(1)), float(m.group(2)), float(m.group(3))
    result = {"model": name, "images": n, "batch_size": HEADLINE[1], "backend": "onnxruntime",
              "command": " ".join(["zoo", *cmd[3:]]), "classify_seconds": seconds, "classify_img_s": rate,
              "process_wall_seconds": wall, "wall_img_s": n / wall, "model_batch_img_s": model_img_s}
    if model_img_s:
        result["ratio"] = rate / model_img_s
        result["ratio_wall"] = (n / wall) / model_img_s
    print(f"zoo classify: {n} JPEGs, {rate:.1f} img/s in the run ({n / wall:.1f} img/s counting process start "
          f"and model load); the model alone: {model_img_s and round(model_img_s, 1)} img/s", flush=True)
    return result


def bench_gpu(names, min_time) -> dict | None:
    import torch

    if not torch.cuda.is_available():
        return None
    from zoo.models import create

    rows = []
    for name in names:
        card = ModelCard.for_model(name)
        model = create(card.architecture).eval().cuda()
        for dtype in (torch.float32, torch.float16):
            m = model.to(dtype)
            for batch in (1, 32, 256):
                x = torch.randn(batch, *card.input_shape, device="cuda", dtype=dtype)

                def step():
                    with torch.inference_mode():
                        m(x)
                    torch.cuda.synchronize()

                t = timed(step, min_time)
                rows.append({"model": card.architecture, "dtype": str(dtype).split(".")[1], "batch": batch,
                             "ms": t * 1e3, "img_s": batch / t})
        del model
    return {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# Inference throughput ({m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
             f"onnxruntime {m['onnxruntime']})", "",
             f"Measured by `python scripts/bench_infer.py` on {report['date']}; load average "
             f"{m['loadavg_start']} at the start, {m['loadavg_end']} at the end (other work on the machine "
             "slows both columns).", "",
             "| model | batch | torch eager ms/batch | torch img/s | ONNX Runtime ms/batch | ONNX Runtime img/s "
             "| ORT / torch |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["cpu"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['torch_ms']:.1f} | {r['torch_img_s']:.1f} | "
                     f"{r['onnxruntime_ms']:.1f} | {r['onnxruntime_img_s']:.1f} | {r['speedup']:.2f}x |")
    s = report["summary"]
    lines += [""]
    if "headline_speedup" in s:
        lines.append(f"- ONNX Runtime / torch eager, {HEADLINE[0]} batch {HEADLINE[1]}: "
                     f"**{s['headline_speedup']:.2f}x** (goal 1.2x)")
    c = report.get("classify")
    if c and c.get("ratio"):
        lines.append(f"- `zoo classify` on {c['images']} JPEGs ({c['model']}, ONNX Runtime): "
                     f"{c['classify_img_s']:.1f} img/s = **{c['ratio']:.2f}x** the model's own batch-"
                     f"{c['batch_size']} throughput ({c['model_batch_img_s']:.1f} img/s; goal 0.8x); "
                     f"{c['ratio_wall']:.2f}x counting process start and model load")
    f = report.get("flops")
    if f:
        lines.append(f"- {FLOPS_MODEL[0]} batch {FLOPS_MODEL[1]}: {f['gflop_per_batch']:.0f} GFLOP per batch; "
                     f"torch {f['torch_gflops']:.1f} GFLOP/s = **{f['torch_ratio']:.2f}** of the measured fp32 "
                     f"matmul peak ({f['peak_gflops']:.1f} GFLOP/s, torch.mm {f['peak_n']}x{f['peak_n']}); "
                     f"ONNX Runtime {f['onnxruntime_gflops']:.1f} GFLOP/s = **{f['onnxruntime_ratio']:.2f}**")
    g = report.get("gpu")
    if g:
        lines += ["", f"## torch on {g['gpu']}", "", "| model | dtype | batch | ms/batch | img/s |",
                  "| --- | --- | ---: | ---: | ---: |"]
        lines += [f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['ms']:.2f} | {r['img_s']:.0f} |"
                  for r in g["rows"]]
    else:
        lines += ["", "No CUDA device here: the GPU table is written where one is visible."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds per measurement (at least 3 batches)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for both (default: each's own)")
    ap.add_argument("--classify-images", type=int, default=1000)
    ap.add_argument("--shared", type=pathlib.Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks")
    args = ap.parse_args()

    import onnxruntime
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(["python", *sys.argv]),
              "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                          "onnxruntime": onnxruntime.__version__, "torch_threads": torch.get_num_threads(),
                          "loadavg_start": round(os.getloadavg()[0], 2)}}
    # the peak before and after the models (the best of both: load from elsewhere only lowers it)
    peak = matmul_peak() if FLOPS_MODEL[0] in args.models else None
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        report["cpu"] = bench_cpu(args.models, args.batches, args.min_time, args.threads, workdir)
        rows = {(r["model"], r["batch"]): r for r in report["cpu"]}
        summary = report["summary"] = {}
        head = rows.get((ModelCard.for_model(HEADLINE[0]).architecture, HEADLINE[1]))
        if head:
            summary["headline_speedup"] = head["speedup"]
        flops_row = rows.get(FLOPS_MODEL)
        if flops_row:
            peak = max(peak, matmul_peak(), key=lambda p: p["gflops"])
            gflop = flops_row["flops"] / 1e9
            report["flops"] = {"gflop_per_batch": gflop, "peak_gflops": peak["gflops"], "peak_n": peak["n"],
                               "torch_gflops": gflop / (flops_row["torch_ms"] / 1e3),
                               "onnxruntime_gflops": gflop / (flops_row["onnxruntime_ms"] / 1e3)}
            f = report["flops"]
            f["torch_ratio"] = f["torch_gflops"] / f["peak_gflops"]
            f["onnxruntime_ratio"] = f["onnxruntime_gflops"] / f["peak_gflops"]
            print(f"matmul peak {peak['gflops']:.1f} GFLOP/s; {FLOPS_MODEL[0]} b{FLOPS_MODEL[1]}: torch "
                  f"{f['torch_ratio']:.2f}, onnxruntime {f['onnxruntime_ratio']:.2f} of it", flush=True)
        if args.classify_images and (args.shared / "datasets" / "hymenoptera").is_dir():
            report["classify"] = bench_classify(args.shared, args.classify_images, args.threads, workdir,
                                                head["onnxruntime_img_s"] if head else None)
    report["gpu"] = bench_gpu(args.models, args.min_time)
    report["machine"]["loadavg_end"] = round(os.getloadavg()[0], 2)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.out / "infer.json", json.dumps(report, indent=2) + "\n")
    atomic.write_text(args.out / "infer.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
