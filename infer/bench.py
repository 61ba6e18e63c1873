"""`zoo bench`'s library: throughput and latency of one model in every runtime and precision this
machine can run, against ONNX Runtime fp32 measured in the same run (what trtexec, OpenVINO's
benchmark_app and timm's benchmark.py are to their users).

    >>> from infer.bench import run_bench, format_table
    >>> report = run_bench("runs/resnet18-2026...", batch_sizes=(1, 32), seconds=3)
    >>> print(format_table(report))

How it measures. For each (runtime, precision) pair: `infer.load(path, runtime, precision=p,
threads=...)` once; per batch size, one fixed standard-normal float32 batch of the card's input shape
(seeded: every runtime sees the same numbers); calls to `predict` for `warmup` seconds (at least one
call), then timed calls, one `time.perf_counter` interval each, until `seconds` have passed and at
least `min_iterations` calls were made. A call is what a user of the Predictor gets: input copy in,
inference, logits out as float32 NumPy (on a GPU: host-device copies included, synchronized).
Throughput is images / summed call time; latencies are per call. ONNX Runtime fp32 (`BASELINE`) is
always measured, named or not, and every row's `speedup` is its img/s over ONNX Runtime fp32's at the
same batch size in the same run. Each predictor is freed before the next is loaded.

Which pairs. Every runtime in BACKENDS x every precision in PRECISIONS (or those named), each asked for
explicitly (`infer.options(path, runtime, precision)`), so a reduced precision is measured whether or
not the export verified its accuracy (`zoo bench` measures speed; `auto` still takes only verified
ones). A pair that cannot run here is listed in `skipped` with its reason; a named runtime or precision
that cannot run at all raises BenchError (one line).

JSON schema (`report`, `format_json`; `SCHEMA` names its version):

    {
      "schema": "cnnzoo.bench/1",
      "model": "resnet18-20261121-101500",      # the run directory's (or file's) name
      "path": "runs/resnet18-20261121-101500",  # as given
      "architecture": "resnet18",               # from the model card
      "input_shape": [3, 224, 224],             # [C, H, W], from the card
      "num_classes": 2,
      "cpu": {"name": str, "flags": [str], "cores": int | null, "machine": str},   # zoo.hardware
      "versions": {"python": str, "numpy": str, "cnnzoo": str,
                   "onnxruntime": str | null, "openvino": str | null, "torch": str | null,
                   "tensorrt": str | null},     # null: not installed (read without importing)
      "threads": int | null,                    # null: each runtime's own default
      "batch_sizes": [1, 32],
      "seconds": 3.0, "warmup": 1.0, "min_iterations": 3,   # the budget per (pair, batch size)
      "date": "2026-11-21T12:00:00+00:00",
      "load_average": {"start": float | null, "end": float | null},   # 1-minute, for noise
      "baseline": {"runtime": "onnxruntime", "precision": "fp32", "file": str | null,
                   "problem": str | null},      # problem: why it could not run (speedups null)
      "rows": [                                 # by batch size; the baseline first in each
        {"runtime": "openvino", "precision": "int8", "batch_size": 32,
         "file": "model.int8.onnx", "device": "CPU f32", "load_seconds": 1.2,
         "iterations": 40, "seconds": 3.05, "img_s": 974.2,
         "mean_ms": 32.8, "p50_ms": 32.5, "p90_ms": 33.9, "p99_ms": 35.0,
         "speedup": 10.04,                      # img/s over ONNX Runtime fp32's; null without it
         "baseline": false}                     # true on the ONNX Runtime fp32 rows
      ],
      "skipped": [{"runtime": "onnxruntime", "precision": "bf16", "reason": str}]
    }

CSV (`format_csv`): one line per row, columns CSV_COLUMNS (the model's name and architecture first, so
several models' files concatenate). Imports nothing heavy itself: each runtime is imported by its
backend when loaded.
"""

from __future__ import annotations

import csv
import datetime
import gc
import io
import json
import os
import pathlib
import platform
import time
from typing import Callable, Iterable

import numpy as np

from zoo import rundir
from zoo.card import PRECISIONS

from .policy import Option, library_missing, load, options
from .predictor import BACKENDS

SCHEMA = "cnnzoo.bench/1"
BASELINE = ("onnxruntime", "fp32")
DEFAULT_BATCH_SIZES = (1, 32)
ROW_FIELDS = (
    "runtime",
    "precision",
    "batch_size",
    "file",
    "device",
    "load_seconds",
    "iterations",
    "seconds",
    "img_s",
    "mean_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "speedup",
    "baseline",
)
CSV_COLUMNS = ("model", "architecture", *ROW_FIELDS)
LIBRARIES = ("onnxruntime", "openvino", "torch", "tensorrt")  # module names whose versions a report gives


class BenchError(ValueError):
    """What was asked for cannot be benchmarked here; the message (one line) says why."""


def plan(
    path: str | os.PathLike,
    runtimes: Iterable[str] | None = None,
    precisions: Iterable[str] | None = None,
    device: str | None = None,
) -> tuple[list[Option], Option]:
    """(every pair to consider, in measuring order, each with its `problem` where it cannot run; the
    baseline). The baseline (ONNX Runtime fp32) comes first, whether named or not."""
    runtimes = _checked(runtimes, BACKENDS, "runtime")
    precisions = _checked(precisions, PRECISIONS, "precision")
    pairs = [(b, p) for p in precisions for b in runtimes]
    if BASELINE in pairs:
        pairs.remove(BASELINE)
    found = [options(path, b, p, device=device)[0] for b, p in [BASELINE, *pairs]]
    return found, found[0]


def _checked(names, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    if names is None:
        return allowed
    names = tuple(dict.fromkeys(names))
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise BenchError(f"unknown {what} {', '.join(map(repr, unknown)) or '(none)'}; use {', '.join(allowed)}")
    return names


def _refuse_named(path, found: list[Option], runtimes, precisions) -> None:
    """BenchError where a named runtime or precision has no pair that can run here."""
    named = [("runtime", "backend", r) for r in runtimes or ()] + [
        ("precision", "precision", p) for p in precisions or ()
    ]
    for what, attr, name in named:
        mine = [
            o
            for o in found
            if getattr(o, attr) == name
            and o.backend in (runtimes or BACKENDS)
            and o.precision in (precisions or PRECISIONS)
        ]
        if mine and all(o.problem for o in mine):
            missing = library_missing(name) if attr == "backend" else None
            if missing:  # say that, not "no file" for each precision
                raise BenchError(f"{path}: runtime {name} cannot run here: {missing}")
            reasons: dict[str, list[str]] = {}
            for o in mine:
                reasons.setdefault(o.problem, []).append(o.precision if attr == "backend" else o.backend)
            text = "; ".join(f"{', '.join(who)}: {why}" for why, who in reasons.items())
            raise BenchError(f"{path}: {what} {name} cannot run here ({text})")


def run_bench(
    path: str | os.PathLike,
    runtimes: Iterable[str] | None = None,
    precisions: Iterable[str] | None = None,
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    threads: int | None = None,
    seconds: float = 3.0,
    warmup: float = 1.0,
    min_iterations: int = 3,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Measure `path` (a run directory or a model file, as `infer.load` takes) in every runtime and
    precision usable here, or those named; returns the report (the module docstring gives its schema).

    Raises BenchError where a named runtime or precision cannot run at all, and infer's ModelFileError
    where `path` is no model."""
    batch_sizes = _budget(batch_sizes, seconds, warmup, min_iterations)
    runtimes = None if runtimes is None else _checked(runtimes, BACKENDS, "runtime")
    precisions = None if precisions is None else _checked(precisions, PRECISIONS, "precision")
    path = pathlib.Path(path)
    found, baseline = plan(path, runtimes, precisions, device)
    _refuse_named(path, found, runtimes, precisions)
    if all(o.problem for o in found):
        load(path, device=device)  # raises the error that says best why nothing runs here
        raise BenchError(f"{path}: nothing can run here: {found[0].problem}")  # pragma: no cover

    report = _header(path, baseline, threads, batch_sizes, seconds, warmup, min_iterations)
    rows = _measure_all(
        path,
        found,
        baseline,
        report,
        progress or (lambda line: None),
        threads=threads,
        device=device,
        batch_sizes=batch_sizes,
        seconds=seconds,
        warmup=warmup,
        min_iterations=min_iterations,
    )
    _compare(report, rows, found, baseline, batch_sizes)
    report["load_average"]["end"] = _loadavg()
    return report


def _measure_all(
    path: pathlib.Path, found: list[Option], baseline: Option, report: dict, note: Callable[[str], None], **settings
) -> list[dict]:
    """The rows of every pair that can run here, at every batch size; the pairs that cannot, or that
    failed, go to the report's `skipped` with why."""
    rows = []
    inputs: dict[tuple, np.ndarray] = {}  # one batch per input shape: every runtime sees the same numbers
    for option in found:
        if option.problem:
            report["skipped"].append(_skip(option, option.problem))
            continue
        measured, problem = _measure_option(path, option, option is baseline, report, inputs, note, **settings)
        rows += measured
        if problem:
            report["skipped"].append(_skip(option, problem))
    return rows


def _budget(batch_sizes: Iterable[int], seconds: float, warmup: float, min_iterations: int) -> list[int]:
    """The batch sizes, once each; BenchError where they or the time budget make no sense."""
    batch_sizes = list(dict.fromkeys(int(b) for b in batch_sizes))
    if not batch_sizes or min(batch_sizes) < 1:
        raise BenchError("batch sizes must be positive integers")
    if seconds < 0 or warmup < 0 or min_iterations < 1:
        raise BenchError("seconds and warmup must be >= 0, min_iterations >= 1")
    return batch_sizes


def _compare(report: dict, rows: list[dict], found: list[Option], baseline: Option, batch_sizes: list[int]) -> None:
    """Each row's speed-up over the baseline at its batch size, the rows in order (by batch size, then
    as measured) into the report, and why the baseline, runnable in principle, gave no row."""
    if baseline.problem is None and not any(r["baseline"] for r in rows):
        report["baseline"]["problem"] = next(
            s["reason"] for s in report["skipped"] if (s["runtime"], s["precision"]) == BASELINE
        )
    base = {r["batch_size"]: r["img_s"] for r in rows if r["baseline"]}
    for r in rows:
        r["speedup"] = round(r["img_s"] / base[r["batch_size"]], 3) if r["batch_size"] in base else None
        r["img_s"] = round(r["img_s"], 2)
    order = {(o.backend, o.precision): i for i, o in enumerate(found)}
    report["rows"] = sorted(
        rows, key=lambda r: (batch_sizes.index(r["batch_size"]), order[r["runtime"], r["precision"]])
    )


def _header(path: pathlib.Path, baseline, threads, batch_sizes, seconds, warmup, min_iterations) -> dict:
    """The report's fields that do not depend on the measurements (rows and skipped left empty)."""
    return {
        "schema": SCHEMA,
        "model": rundir.model_name(path),
        "path": str(path),
        "architecture": None,
        "input_shape": None,
        "num_classes": None,
        "cpu": _cpu(),
        "versions": versions(),
        "threads": threads,
        "batch_sizes": batch_sizes,
        "seconds": seconds,
        "warmup": warmup,
        "min_iterations": min_iterations,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average": {"start": _loadavg(), "end": None},
        "baseline": {
            "runtime": baseline.backend,
            "precision": baseline.precision,
            "file": baseline.file and str(baseline.file),
            "problem": baseline.problem,
        },
        "rows": [],
        "skipped": [],
    }


def _measure_option(
    path: pathlib.Path,
    option,
    is_baseline: bool,
    report: dict,
    inputs: dict,
    note,
    *,
    threads,
    device,
    batch_sizes,
    seconds,
    warmup,
    min_iterations,
) -> tuple[list[dict], str | None]:
    """(rows, None) for one runtime and precision at every batch size, or ([], why) where it failed to
    load or to run (a finding, not the end of the run). Fills the report's model fields on first use."""
    try:
        start = time.perf_counter()
        predictor = load(path, option.backend, precision=option.precision, threads=threads, device=device)
        load_seconds = time.perf_counter() - start
    except Exception as e:  # a runtime that fails on this file is a finding, not the end of the run
        return [], f"failed to load: {_one_line(e)}"
    card = predictor.card
    if report["architecture"] is None:
        report.update(architecture=card.architecture, input_shape=list(card.input_shape), num_classes=card.num_classes)
    shape = tuple(card.input_shape)
    if shape not in inputs:
        inputs[shape] = np.random.default_rng(0).standard_normal((max(batch_sizes), *shape), dtype=np.float32)
    rows = []
    try:
        for b in batch_sizes:
            row = {
                "runtime": option.backend,
                "precision": option.precision,
                "batch_size": b,
                "file": option.file.name if option.file else None,
                "device": predictor.device,
                "load_seconds": round(load_seconds, 3),
                **measure(predictor.predict, inputs[shape][:b], seconds, warmup, min_iterations),
                "speedup": None,
                "baseline": is_baseline,
            }
            rows.append(row)
            note(
                f"{option.backend} {option.precision} batch {b}: {row['img_s']:.1f} img/s, "
                f"p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms ({row['iterations']} calls)"
            )
        return rows, None
    except Exception as e:
        return [], f"failed to run: {_one_line(e)}"
    finally:
        del predictor
        gc.collect()  # vgg16 is 500 MB per copy: free it before the next runtime loads its own


def measure(
    fn: Callable[[np.ndarray], object], x: np.ndarray, seconds: float, warmup: float = 1.0, min_iterations: int = 3
) -> dict:
    """Time fn(x): warm up for `warmup` seconds (at least one call), then time calls until `seconds`
    have passed and `min_iterations` calls were made. Returns iterations, seconds, img_s and the
    mean / p50 / p90 / p99 milliseconds per call (img_s unrounded)."""
    end = time.perf_counter() + warmup
    fn(x)
    while time.perf_counter() < end:
        fn(x)
    times = []
    start = time.perf_counter()
    while len(times) < min_iterations or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    t = np.asarray(times)
    p50, p90, p99 = np.percentile(t, [50, 90, 99]) * 1e3
    return {
        "iterations": len(t),
        "seconds": round(float(t.sum()), 4),
        "img_s": len(x) * len(t) / float(t.sum()),
        "mean_ms": round(float(t.mean()) * 1e3, 4),
        "p50_ms": round(float(p50), 4),
        "p90_ms": round(float(p90), 4),
        "p99_ms": round(float(p99), 4),
    }


def _skip(option: Option, reason: str) -> dict:
    return {"runtime": option.backend, "precision": option.precision, "reason": reason}


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _cpu() -> dict:
    from zoo.hardware import cpu

    return cpu().to_dict()


def versions() -> dict[str, str | None]:
    """Python, NumPy, cnnzoo and each runtime library's installed version (None where missing), read
    from the installed distributions' metadata: nothing is imported."""
    from importlib import metadata

    from zoo import __version__

    result = {"python": platform.python_version(), "numpy": np.__version__, "cnnzoo": __version__}
    try:
        dists = metadata.packages_distributions()  # module -> distributions (onnxruntime-gpu, tensorrt-cu13)
    except Exception:  # noqa: BLE001 - a broken distribution's metadata must not stop a benchmark
        dists = {}
    for module in LIBRARIES:
        version = None
        for dist in [*dists.get(module, []), module]:
            try:
                version = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        result[module] = version
    return result


# ---- output ----


def format_json(report: dict) -> str:
    return json.dumps(report, indent=2) + "\n"


def format_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in report["rows"]:
        writer.writerow({"model": report["model"], "architecture": report["architecture"], **row})
    return out.getvalue()


def cpu_line(cpu: dict) -> str:
    """ "CPU: <name>, N cores; flags: ..." for a report's `cpu`."""
    flags = " ".join(cpu.get("flags") or []) or "none of the AVX512/AMX/VNNI/BF16/FP16 ones"
    cores = f", {cpu['cores']} cores" if cpu.get("cores") else ""
    return f"CPU: {cpu.get('name', '?')}{cores} ({cpu.get('machine', '?')}); flags: {flags}"


def format_table(report: dict) -> str:
    """A plain-text table: a header (model, CPU and its relevant flags, threads), one line per
    (runtime, precision, batch size), then the pairs skipped and why."""
    shape = "x".join(map(str, report["input_shape"] or [])) or "?"
    threads = report["threads"] or "each runtime's default"
    lines = [
        f"{report['model']}: {report['architecture']}, input {shape}; threads: {threads}; "
        f"{report['seconds']:g} s per measurement",
        cpu_line(report["cpu"]),
    ]
    head = ("runtime", "precision", "batch", "img/s", "p50 ms", "p99 ms", "vs ORT fp32")
    body = [
        (
            r["runtime"],
            r["precision"],
            str(r["batch_size"]),
            f"{r['img_s']:.1f}",
            _ms(r["p50_ms"]),
            _ms(r["p99_ms"]),
            _times(r["speedup"]),
        )
        for r in report["rows"]
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines.append("")
    for i, row in enumerate([head, *body]):
        lines.append("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if report["baseline"]["problem"]:
        lines += ["", f"no speed-ups: ONNX Runtime fp32 cannot run: {report['baseline']['problem']}"]
    if report["skipped"]:
        lines += ["", "skipped:"]
        lines += [f"  {s['precision']} on {s['runtime']}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"


def _ms(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _times(speedup: float | None) -> str:
    if speedup is None:
        return "-"
    return f"{speedup:.2f}x" if speedup >= 0.1 else f"{speedup:.3f}x"


FORMATTERS = {"table": format_table, "json": format_json, "csv": format_csv}
