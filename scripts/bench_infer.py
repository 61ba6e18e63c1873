"""Inference benchmark: every runtime and precision this machine can run (`zoo bench`'s library,
infer/bench.py) for lenet5, resnet18, resnet50, vgg16 and googlenet at batch 1 and 32, against ONNX
Runtime fp32 measured in the same run; `zoo classify` end to end (JPEG decoding included) against the
model's own batch-32 throughput; resnet50's achieved GFLOP/s against this machine's measured fp32
matrix-multiply peak; torch on a CUDA device where one is visible.

    python scripts/bench_infer.py                     # -> benchmarks/infer.json, benchmarks/infer.md
    python scripts/bench_infer.py --quick             # smoke run: lenet5, tiny budgets, writes nothing
    python scripts/bench_infer.py --models resnet18 --classify-images 200 --out /tmp/bench   # a look

Each model is a run directory with random weights (speed does not depend on them) and two classes
(ants, bees), exported with `zoo export RUN` (model.onnx; model.fp16.onnx too where a CUDA device is
visible) and `zoo export RUN --int8 --calibration <ants/bees train photos> --verify-data <val photos>
--max-accuracy-drop 100` (model.int8.onnx: calibrated on real photos; the accuracy limit is off because
random weights have no accuracy to keep; the export also times each verified option on this CPU, which
`auto` ranks by). Measuring rules (warm-up, budget, percentiles): infer/bench.py. The machine's load
average at the start and end is recorded: other work on the machine slows every column.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from infer.bench import BASELINE, cpu_line, run_bench, versions
from zoo import atomic, rundir
from zoo.card import ModelCard

ROOT = pathlib.Path(__file__).resolve().parents[1]

MODELS = ["lenet5", "resnet18", "resnet50", "vgg16", "googlenet"]
CLASSES = ["ants", "bees"]
HEADLINE = ("resnet18", 32)  # `auto` vs ONNX Runtime fp32: goal >= 5x with AMX / AVX512-VNNI, else 2.5x
FLOPS_MODEL = ("resnet50", 32)
CLASSIFY_GOAL = 0.7  # `zoo classify` img/s over the model's own batch throughput (int8)
CLASSIFY_MODELS = ["resnet18", "vgg16"]  # a model fast next to JPEG decoding, and a slow one
# oneDNN's ISA caps (OpenVINO honours them; ONNX Runtime's MLAS does not): this CPU without AMX, as an
# AVX512-VNNI Xeon (Ice Lake) or AMD Zen 4 would run OpenVINO, and with AVX2 only, as AMD Zen 2/3 would.
ISA_CAPS = {"AVX512_CORE_VNNI": "no AMX: AVX512-VNNI (Ice Lake, Zen 4)", "AVX2": "AVX2 only (Zen 2/3)"}
PAIR_NAMES = {"onnxruntime": "ORT", "openvino": "OpenVINO", "torch": "torch", "tensorrt": "TensorRT"}


def timed(fn, min_time: float, min_runs: int = 3, warmup: int = 1) -> float:
    """Median seconds per call of fn() (the GPU table and the matmul peak)."""
    import statistics

    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_peak(n: int = 4096, repeats: int = 3) -> dict:
    """fp32 GFLOP/s of torch.mm on n x n matrices: the best of `repeats`."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b), 0, 1, 0) for _ in range(repeats))
    return {"n": n, "seconds": best, "gflops": 2 * n**3 / best / 1e9}


def forward_flops(model, input_shape) -> int:
    """FLOPs of one image's forward pass (torch.utils.flop_counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, *input_shape))
    return counter.get_total_flops()


def zoo(*args, cwd=None) -> subprocess.CompletedProcess:
    """Run `zoo ARGS` in a fresh interpreter (as a user would)."""
    return subprocess.run([sys.executable, "-m", "zoo", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def make_run(name: str, workdir: pathlib.Path, fp16: bool) -> tuple[pathlib.Path, int]:
    """A run directory for model `name` with random weights (seeded), exported to ONNX; and the
    FLOPs of one image's forward pass."""
    import torch

    from export.onnx import export_run
    from zoo.models import create

    card = ModelCard.for_model(name, class_names=CLASSES)
    run = workdir / card.architecture
    run.mkdir()
    torch.manual_seed(0)
    model = create(card.architecture, num_classes=card.num_classes, in_channels=card.in_channels).eval()
    rundir.save_weights(run / rundir.WEIGHTS, model)
    card.save(run / rundir.CARD)
    flops = forward_flops(model, card.input_shape)
    del model
    export_run(run, fp16=fp16, log=None)
    return run, flops


def export_int8(run: pathlib.Path, calibration: pathlib.Path | None) -> dict:
    """`zoo export RUN --int8` calibrated on the ants/bees photos; what happened, in one line."""
    if calibration is None:
        return {"ok": False, "error": "no calibration photos (--shared/datasets/hymenoptera/train missing)"}
    start = time.perf_counter()
    verify = calibration.parent / "val"  # photos it never calibrated on
    out = zoo(
        "export", run, "--int8", "--calibration", calibration, "--verify-data", verify, "--max-accuracy-drop", "100"
    )
    result = {
        "ok": out.returncode == 0 and (run / "model.int8.onnx").is_file(),
        "seconds": round(time.perf_counter() - start, 1),
        "command": f"zoo export {run.name} --int8 --calibration {calibration} --verify-data {verify} "
        "--max-accuracy-drop 100",
    }
    if not result["ok"]:
        result["error"] = last_line(out.stderr) or last_line(out.stdout) or f"exit {out.returncode}"
    else:
        result["output"] = [line for line in out.stderr.strip().splitlines() if "accuracy" in line.lower()][-3:]
    return result


def auto_choice(run: pathlib.Path) -> tuple[str, str] | None:
    """(runtime, precision) that `infer.load(run)` would take here (nothing is loaded)."""
    import infer

    try:
        chosen, _ = infer.choose(run)
    except (infer.ModelFileError, infer.BackendUnavailable):
        return None
    return chosen.backend, chosen.precision


def find_row(report: dict, runtime: str, precision: str, batch: int) -> dict | None:
    return next(
        (r for r in report["rows"] if (r["runtime"], r["precision"], r["batch_size"]) == (runtime, precision, batch)),
        None,
    )


def make_jpegs(photos_root: pathlib.Path, out: pathlib.Path, count: int) -> None:
    """`count` JPEGs in out/{ants,bees}/: hymenoptera photos, each a different random crop."""
    from PIL import Image

    photos = sorted(photos_root.glob("*/*/*.jp*g"))
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


def classify_supports_precision() -> bool:
    return "--precision" in zoo("classify", "--help").stdout


def bench_classify(
    run: pathlib.Path,
    report: dict,
    photos_root: pathlib.Path,
    count: int,
    batch: int,
    threads: int | None,
    workdir: pathlib.Path,
) -> dict:
    """`zoo classify` on `count` JPEGs with the int8 model (where there is one), against that model's
    own batch throughput in the same runtime from `report`."""
    images = workdir / "jpegs"
    if not images.is_dir():
        make_jpegs(photos_root, images, count)
    int8 = run / "model.int8.onnx"
    cmd = ["classify", run, images, "--batch-size", batch, "--output", workdir / "results.jsonl"]
    if int8.is_file():  # the int8 model: asked for by --precision where classify has it, else by file
        if classify_supports_precision():
            cmd += ["--precision", "int8"]
        else:
            cmd[1] = int8
    if threads:
        cmd += ["--threads", threads]
    start = time.perf_counter()
    out = zoo(*cmd, cwd=workdir)
    wall = time.perf_counter() - start
    if out.returncode:
        return {"model": report["architecture"], "error": last_line(out.stderr)}
    m = re.search(r"(\d+) images in ([\d.]+) s \(([\d.]+) img/s", out.stderr)
    chosen = re.search(r"\b(fp32|bf16|fp16|int8) on (tensorrt|openvino|onnxruntime|torch)\b", out.stderr)
    n, seconds, rate = int(m.group(1)), float(m.group(2)), float(m.group(3))
    precision, runtime = chosen.groups() if chosen else ("?", "?")
    row = find_row(report, runtime, precision, batch)
    model_img_s = row["img_s"] if row else None
    result = {
        "model": report["architecture"],
        "images": n,
        "batch_size": batch,
        "runtime": runtime,
        "precision": precision,
        "command": "zoo " + " ".join(str(c) for c in cmd).replace(str(workdir) + "/", ""),
        "selection": out.stderr.strip().splitlines()[0],
        "classify_seconds": seconds,
        "classify_img_s": rate,
        "process_wall_seconds": round(wall, 2),
        "wall_img_s": n / wall,
        "model_batch_img_s": model_img_s,
    }
    if model_img_s:
        result["ratio"] = rate / model_img_s
        result["ratio_wall"] = (n / wall) / model_img_s
    print(
        f"zoo classify: {n} JPEGs, {precision} on {runtime}: {rate:.1f} img/s in the run ({n / wall:.1f} img/s "
        f"counting process start and model load); the model alone at batch {batch}: "
        f"{model_img_s and round(model_img_s, 1)} img/s",
        flush=True,
    )
    return result


def bench_isa_caps(run: pathlib.Path, batch: int, seconds: float, warmup: float, threads: int | None) -> list:
    """OpenVINO fp32 and int8 on `run` with oneDNN's ISA capped (ONEDNN_MAX_CPU_ISA), each in its own
    process: what a CPU without AMX (or with AVX2 only) gets from int8, as a ratio measured in one run.
    bf16 is left out: without AVX512-BF16 it would be emulated, and `infer.load` refuses it there."""
    rows = []
    for cap, what in ISA_CAPS.items():
        cmd = [
            "bench",
            run,
            "--runtime",
            "openvino",
            "--precision",
            "fp32,int8",
            "--batch-size",
            batch,
            "--seconds",
            seconds,
            "--warmup",
            warmup,
            "--format",
            "json",
        ] + (["--threads", threads] if threads else [])
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": cap}
        out = subprocess.run([sys.executable, "-m", "zoo", *map(str, cmd)], capture_output=True, text=True, env=env)
        if out.returncode:
            rows.append({"isa": cap, "what": what, "error": last_line(out.stderr)})
            continue
        bench = json.loads(out.stdout)
        fp32, int8 = (find_row(bench, "openvino", p, batch) for p in ("fp32", "int8"))
        rows.append(
            {
                "isa": cap,
                "what": what,
                "model": bench["architecture"],
                "batch": batch,
                "openvino_fp32_img_s": fp32 and fp32["img_s"],
                "openvino_int8_img_s": int8 and int8["img_s"],
                "int8_over_fp32": fp32 and int8 and int8["img_s"] / fp32["img_s"],
            }
        )
        print(
            f"ISA capped to {cap}: OpenVINO fp32 {fp32 and round(fp32['img_s'], 1)}, int8 "
            f"{int8 and round(int8['img_s'], 1)} img/s",
            flush=True,
        )
    return rows


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
                rows.append(
                    {
                        "model": card.architecture,
                        "dtype": str(dtype).split(".")[1],
                        "batch": batch,
                        "ms": t * 1e3,
                        "img_s": batch / t,
                    }
                )
        del model
    return {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}


def headline_goal(cpu: dict) -> float:
    flags = set(cpu.get("flags") or [])
    return 5.0 if flags & {"amx_int8", "avx512_vnni"} else 2.5


def times(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


def markdown(report: dict) -> str:
    m = report["machine"]
    v = m["versions"]
    libs = ", ".join(f"{k} {v[k]}" for k in ("onnxruntime", "openvino", "torch", "tensorrt") if v.get(k))
    s = report["settings"]
    lines = [
        f"# Inference throughput ({m['cpu']['name']}, {m['cpu']['cores']} cores)",
        "",
        f"Measured by `{report['command']}` on {report['date']} ({libs}); load average "
        f"{m['loadavg_start']} at the start, {m['loadavg_end']} at the end (other work on the machine "
        "slows every column).",
        "",
        cpu_line(m["cpu"]) + ".",
        "",
        f"img/s per (runtime, precision) and its speed-up over ONNX Runtime fp32 measured in the same run "
        f"(`zoo bench MODEL`; random weights, {s['seconds']:g} s per measurement after {s['warmup']:g} s "
        f"of warm-up; threads: {s['threads'] or 'each runtime’s default'}). Reduced precisions are "
        "computed natively or not at all: a pair missing here cannot run on this machine (reasons below).",
        "",
    ]
    pairs: list[tuple[str, str]] = [BASELINE]
    for bench in report["models"].values():
        for r in bench["rows"]:
            if (r["runtime"], r["precision"]) not in pairs:
                pairs.append((r["runtime"], r["precision"]))
    head = ["model", "batch"] + [f"{PAIR_NAMES.get(b, b)} {p}" for b, p in pairs]
    lines += ["| " + " | ".join(head) + " |", "| --- | ---: |" + " ---: |" * len(pairs)]
    for bench in report["models"].values():
        for batch in bench["batch_sizes"]:
            cells = []
            for b, p in pairs:
                r = find_row(bench, b, p, batch)
                if r is None:
                    cells.append("–")
                elif r["baseline"] or r["speedup"] is None:
                    cells.append(f"{r['img_s']:.1f}")
                else:
                    cells.append(f"{r['img_s']:.1f} ({times(r['speedup'])})")
            lines.append(f"| {bench['architecture']} | {batch} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Latency p50 / p99 per call (ms), batch 1:",
        "",
        "| model | " + " | ".join(f"{PAIR_NAMES.get(b, b)} {p}" for b, p in pairs) + " |",
        "| --- |" + " ---: |" * len(pairs),
    ]
    for bench in report["models"].values():
        cells = []
        for b, p in pairs:
            r = find_row(bench, b, p, 1)
            cells.append("–" if r is None else f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}")
        lines.append(f"| {bench['architecture']} | " + " | ".join(cells) + " |")
    reasons: dict[str, list[str]] = {}
    for name, bench in report["models"].items():
        for sk in bench["skipped"]:
            reason = sk["reason"].replace(str(bench["path"]), "RUN")
            reasons.setdefault(f"{sk['precision']} on {sk['runtime']}: {reason}", []).append(name)
    if reasons:
        every = len(report["models"])
        lines += ["", "Not measured here:", ""]
        lines += [f"- {why}" + ("" if len(who) == every else f" ({', '.join(who)})") for why, who in reasons.items()]
    fails = {k: x for k, x in report["int8_export"].items() if not x["ok"]}
    if fails:
        lines += ["", "int8 export failed (no int8 column for these):", ""]
        lines += [f"- {k}: {x['error']}" for k, x in fails.items()]

    sm = report["summary"]
    lines += [""]
    h = sm.get("headline")
    if h:
        lines.append(
            f"- {h['model']} batch {h['batch']}, `auto` ({h['precision']} on {h['runtime']}): "
            f"**{times(h['speedup'])}** ONNX Runtime fp32 (goal {h['goal']:g}x on this CPU)"
            if h.get("speedup")
            else f"- {h['model']}: `auto` takes {h['precision']} on {h['runtime']}, not measured at batch 32"
        )
    if "ort_over_torch" in sm:
        o = sm["ort_over_torch"]
        lines.append(
            f"- ONNX Runtime fp32 / torch eager fp32, {o['model']} batch {o['batch']}: **{times(o['ratio'])}**"
        )
    for c in report.get("classify") or []:
        if c.get("ratio"):
            lines.append(
                f"- `zoo classify` on {c['images']} JPEGs ({c['model']}, {c['precision']} on "
                f"{c['runtime']}, decoding included): {c['classify_img_s']:.1f} img/s = "
                f"**{times(c['ratio'])}** the model's own batch-{c['batch_size']} throughput "
                f"({c['model_batch_img_s']:.1f} img/s; goal {CLASSIFY_GOAL}x); {times(c['ratio_wall'])} "
                "counting process start and model load"
            )
        else:
            lines.append(
                f"- `zoo classify` ({c.get('model')}): {c.get('error') or 'no batch throughput to compare with'}"
            )
    for r in report.get("isa_caps") or []:
        if r.get("int8_over_fp32"):
            lines.append(
                f"- OpenVINO with oneDNN capped to {r['isa']} ({r['what']}), {r['model']} batch "
                f"{r['batch']}: fp32 {r['openvino_fp32_img_s']:.1f}, int8 {r['openvino_int8_img_s']:.1f} "
                f"img/s = **{times(r['int8_over_fp32'])}** (ONNX Runtime ignores the cap, so no ratio "
                "against it)"
            )
        else:
            lines.append(f"- OpenVINO capped to {r['isa']}: {r.get('error') or 'no int8 row'}")
    f = report.get("flops")
    if f:
        lines.append(
            f"- {FLOPS_MODEL[0]} batch {FLOPS_MODEL[1]}: {f['gflop_per_batch']:.0f} GFLOP per batch; "
            f"measured fp32 matmul peak {f['peak_gflops']:.1f} GFLOP/s (torch.mm {f['peak_n']}x"
            f"{f['peak_n']}); "
            + "; ".join(f"{name} {g:.1f} GFLOP/s = **{g / f['peak_gflops']:.2f}**" for name, g in f["per_pair"].items())
            + " of it (reduced precisions exceed it)"
        )
    g = report.get("gpu")
    if g:
        lines += [
            "",
            f"## torch on {g['gpu']}",
            "",
            "| model | dtype | batch | ms/batch | img/s |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['ms']:.2f} | {r['img_s']:.0f} |" for r in g["rows"]
        ]
    else:
        lines += ["", "No CUDA device here: the GPU table is written where one is visible."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=None, help=f"default: {' '.join(MODELS)}")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--min-time", type=float, default=3.0, help="timed seconds per measurement (at least 3 calls)")
    ap.add_argument("--warmup", type=float, default=1.0, help="untimed seconds first (at least 1 call)")
    ap.add_argument(
        "--threads", type=int, default=None, help="intra-op threads for every runtime (default: each's own)"
    )
    ap.add_argument("--classify-images", type=int, default=1000)
    ap.add_argument("--no-int8", action="store_true", help="skip `zoo export --int8` (no int8 column)")
    ap.add_argument("--shared", type=pathlib.Path, default=ROOT.parent / "shared")
    ap.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help="where infer.json / infer.md go (default: benchmarks/; with --quick: nowhere)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: lenet5 only, 0.2 s per measurement, 64 JPEGs; writes files only with --out",
    )
    args = ap.parse_args()
    if args.quick:
        args.models = args.models or ["lenet5"]
        args.min_time, args.warmup = min(args.min_time, 0.2), min(args.warmup, 0.1)
        args.classify_images = min(args.classify_images, 64)
    else:
        args.out = args.out or ROOT / "benchmarks"
    names = [ModelCard.for_model(n).architecture for n in (args.models or MODELS)]

    import torch

    from zoo.hardware import cpu

    if args.threads:
        torch.set_num_threads(args.threads)
    photos = args.shared / "datasets" / "hymenoptera"
    calibration = photos / "train" if (photos / "train").is_dir() else None
    with_gpu = torch.cuda.is_available()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(["python", *sys.argv]).replace(str(ROOT) + "/", ""),
        "machine": {
            "cpu": cpu().to_dict(),
            "versions": versions(),
            "torch_threads": torch.get_num_threads(),
            "loadavg_start": round(os.getloadavg()[0], 2),
        },
        "settings": {
            "batch_sizes": args.batches,
            "seconds": args.min_time,
            "warmup": args.warmup,
            "threads": args.threads,
            "models": names,
            "fp16_files": with_gpu,
        },
        "models": {},
        "int8_export": {},
        "flops_per_image": {},
        "summary": {},
    }
    peak = matmul_peak() if FLOPS_MODEL[0] in names else None
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        runs = {}
        for name in names:
            print(f"== {name}", flush=True)
            run, report["flops_per_image"][name] = make_run(name, workdir, fp16=with_gpu)
            runs[name] = run
            if not args.no_int8:
                x = report["int8_export"][name] = export_int8(run, calibration)
                print(f"int8 export: {'ok' if x['ok'] else x['error']}", flush=True)
            report["models"][name] = run_bench(
                run,
                batch_sizes=args.batches,
                threads=args.threads,
                seconds=args.min_time,
                warmup=args.warmup,
                progress=lambda line: print("  " + line, flush=True),
            )
            for sk in report["models"][name]["skipped"]:
                print(f"  skipped {sk['precision']} on {sk['runtime']}: {sk['reason']}", flush=True)

        summary = report["summary"]
        head_name = HEADLINE[0] if HEADLINE[0] in names else names[0]
        head_batch = HEADLINE[1] if HEADLINE[1] in args.batches else max(args.batches)
        bench = report["models"][head_name]
        choice = auto_choice(runs[head_name])
        if choice:
            row = find_row(bench, *choice, head_batch)
            summary["headline"] = {
                "model": head_name,
                "batch": head_batch,
                "runtime": choice[0],
                "precision": choice[1],
                "speedup": row and row["speedup"],
                "goal": headline_goal(report["machine"]["cpu"]),
            }
        ort, eager = find_row(bench, "onnxruntime", "fp32", head_batch), find_row(bench, "torch", "fp32", head_batch)
        if ort and eager:
            summary["ort_over_torch"] = {
                "model": head_name,
                "batch": head_batch,
                "ratio": ort["img_s"] / eager["img_s"],
            }
        if FLOPS_MODEL[0] in names and FLOPS_MODEL[1] in args.batches:
            peak = max(peak, matmul_peak(), key=lambda p: p["gflops"])  # load from elsewhere only lowers it
            gflop_img = report["flops_per_image"][FLOPS_MODEL[0]] / 1e9
            rows = [r for r in report["models"][FLOPS_MODEL[0]]["rows"] if r["batch_size"] == FLOPS_MODEL[1]]
            report["flops"] = {
                "gflop_per_batch": gflop_img * FLOPS_MODEL[1],
                "peak_gflops": peak["gflops"],
                "peak_n": peak["n"],
                "per_pair": {
                    f"{PAIR_NAMES.get(r['runtime'], r['runtime'])} {r['precision']}": gflop_img * r["img_s"]
                    for r in rows
                },
            }
        if args.classify_images and photos.is_dir():
            report["classify"] = [
                bench_classify(
                    runs[n], report["models"][n], photos, args.classify_images, head_batch, args.threads, workdir
                )
                for n in ([n for n in CLASSIFY_MODELS if n in names] or [head_name])
            ]
        if not args.no_int8 and (runs[head_name] / "model.int8.onnx").is_file():
            report["isa_caps"] = bench_isa_caps(runs[head_name], head_batch, args.min_time, args.warmup, args.threads)
    report["gpu"] = bench_gpu(names, args.min_time)
    report["machine"]["loadavg_end"] = round(os.getloadavg()[0], 2)
    text = markdown(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic.write_text(args.out / "infer.json", json.dumps(report, indent=2) + "\n")
        atomic.write_text(args.out / "infer.md", text)
    print(text)


if __name__ == "__main__":
    main()
