"""Training under CPU contention -> benchmarks/contention.json and benchmarks/contention.md.

`zoo train lenet --epochs 1` (MNIST-small) while N other processes spin (`while True: pass`, one per
N; killed by their pid afterwards), for N in --busy (default 0 and 2), under three thread settings:

    old      every usable CPU, OpenMP's default waiting (spinning): torch imported before zoo's
             command runs, with --threads = the usable CPUs, as `zoo train` did before --threads
    new      `zoo train`'s default (zoo/threads.py): one thread per CPU the others leave free; with
             fewer than every CPU, idle threads sleep (OMP_WAIT_POLICY=PASSIVE)
    omp1     OMP_NUM_THREADS=1

Each run is a fresh process; measured: the epoch's seconds (from the run's history.json) and the
process's wall time. Ratios are against the old setting at the same N, and against the old setting
with no busy processes (this run's quiet baseline). The load average and how busy the machine was
before the busy processes started are recorded: on a machine others use, the numbers are not clean.

    python scripts/bench_contention.py [--busy 0,2] [--repeats 1] [--timeout 150]

About 2 minutes on 2 cores (more when the old setting collapses; --timeout caps each run).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from zoo import atomic, threads
from zoo.hardware import cpu

ROOT = pathlib.Path(__file__).resolve().parents[1]

TRAIN = ["train", "lenet", "--epochs", "1"]
# the old default: torch (and its OpenMP, with its default spin-waiting) loaded before zoo's command
OLD = "import sys, torch; from zoo.cli import main; main(sys.argv[1:])"
SETTINGS = ("old", "new", "omp1")
CLEAN = 0.25  # CPUs' worth of other jobs' work under which a run counts as measured on an idle machine
OMP_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def command(setting: str, output: pathlib.Path, cpus: int) -> tuple[list[str], dict]:
    """The command line and environment of one run under `setting`."""
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
    args = [*TRAIN, "--output", str(output)]
    if setting == "old":
        return [sys.executable, "-c", OLD, *args, "--threads", str(cpus)], env
    if setting == "omp1":
        env["OMP_NUM_THREADS"] = "1"
    return [sys.executable, "-m", "zoo", *args], env


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes `pids` so far (/proc/PID/stat)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def run_once(setting: str, output: pathlib.Path, cpus: int, spinners: list[int], timeout: float) -> dict:
    """One training run; also how busy other jobs kept the CPUs meanwhile (all CPU time on them, less
    the run's own and the spinning processes')."""
    cmd, env = command(setting, output, cpus)
    load, ticks0 = os.getloadavg()[0], threads.cpu_times(threads.usable_cpus())
    children0, spun0 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_seconds(spinners)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {
            "setting": setting,
            "timed_out": True,
            "wall_s": timeout,
            "epoch_s": None,
            "threads": None,
            "loadavg_before": round(load, 2),
            "others_busy_cpus": None,
        }
    wall = time.perf_counter() - start
    children1, ticks1 = resource.getrusage(resource.RUSAGE_CHILDREN), threads.cpu_times(threads.usable_cpus())
    spun = cpu_seconds(spinners) - spun0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out}")
    own = (children1.ru_utime - children0.ru_utime) + (children1.ru_stime - children0.ru_stime)
    others = None
    if ticks0 and ticks1:
        busy = sum((t1 - t0) - (i1 - i0) for (i0, t0), (i1, t1) in zip(ticks0.values(), ticks1.values()))
        others = max(0.0, busy / os.sysconf("SC_CLK_TCK") - own - spun) / wall
    history = json.loads((output / "history.json").read_text())
    first = next(line for line in out.splitlines() if line.startswith("training "))
    used = int(first.rsplit(" thread", 1)[0].rsplit(" ", 1)[1])
    return {
        "setting": setting,
        "timed_out": False,
        "wall_s": round(wall, 2),
        "epoch_s": round(history[0]["seconds"], 2),
        "threads": used,
        "loadavg_before": round(load, 2),
        "others_busy_cpus": None if others is None else round(others, 2),
    }


@contextlib.contextmanager
def spinning(n: int):
    """`n` processes of `while True: pass`, killed by their pid on the way out."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(1.0 if n else 0.0)  # let them start spinning
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def measure(busy: list[int], repeats: int, timeout: float) -> tuple[list[dict], int]:
    cpus = len(threads.usable_cpus())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in busy:
            with spinning(n) as pids:
                for r in range(repeats):
                    for setting in SETTINGS:
                        row = run_once(setting, pathlib.Path(tmp, f"{n}-{setting}-{r}"), cpus, pids, timeout)
                        row["busy_processes"] = n
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    return rows, cpus


def summarize(rows: list[dict], busy: list[int]) -> list[dict]:
    """Per (N, setting): median epoch and wall seconds, and the ratios to the old setting."""

    def median(n, setting, key):
        values = [r[key] for r in rows if r["busy_processes"] == n and r["setting"] == setting and r[key] is not None]
        return round(statistics.median(values), 2) if values else None

    quiet = median(busy[0], "old", "epoch_s")
    out = []
    for n in busy:
        old = median(n, "old", "epoch_s")
        for setting in SETTINGS:
            epoch = median(n, setting, "epoch_s")
            out.append(
                {
                    "busy_processes": n,
                    "setting": setting,
                    "epoch_s": epoch,
                    "wall_s": median(n, setting, "wall_s"),
                    "threads": sorted(
                        {
                            r["threads"]
                            for r in rows
                            if r["busy_processes"] == n and r["setting"] == setting and r["threads"]
                        }
                    ),
                    "old_over_this": round(old / epoch, 2) if old and epoch else None,
                    "this_over_quiet_old": round(epoch / quiet, 2) if quiet and epoch else None,
                    "timed_out": sum(
                        r["timed_out"] for r in rows if r["busy_processes"] == n and r["setting"] == setting
                    ),
                }
            )
    return out


def markdown(report: dict) -> str:
    c = report["cpu"]
    lines = [
        "# Training under CPU contention",
        "",
        f"Written by `python scripts/bench_contention.py` on {report['measured']}: {c['name']} "
        f"({c['machine']}, flags: {', '.join(c['flags']) or 'none of note'}), {report['usable_cpus']} usable "
        f"CPUs, Python {report['python']}, torch {report['torch']}.",
        "",
        f"`zoo {' '.join(TRAIN)}` (MNIST-small, 9,000 training images) while N processes spin "
        "(`while True: pass`). Settings: **old**: every CPU, OpenMP spin-waiting (what `zoo train` did); "
        "**new**: today's default (one thread per CPU the others leave free; with fewer than all CPUs, idle "
        "threads sleep); "
        "**omp1**: `OMP_NUM_THREADS=1`. Epoch: the training epoch's seconds; wall: the whole command. "
        f"Median of {report['repeats']} run(s) each.",
        "",
        f"Load average (1 min) from {report['loadavg_start']} at the start to {report['loadavg_end']} at the "
        f"end. Other jobs kept {report['others_busy_cpus_min']}-{report['others_busy_cpus_max']} CPUs' "
        "worth busy during the runs (all CPU time less the runs' own and the spinning processes'); "
        + (
            f"{report['unclean_runs']} of {len(report['runs'])} runs shared the machine with more than "
            f"{CLEAN} of a CPU: those numbers are not clean."
            if report["unclean_runs"]
            else "the machine was otherwise idle."
        ),
        "",
        "| busy processes | setting | threads | epoch (s) | wall (s) | old / this (epoch) | this / quiet old |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in report["summary"]:
        t = "/".join(map(str, s["threads"])) or "-"
        timed = f" ({s['timed_out']} timed out)" if s["timed_out"] else ""
        lines.append(
            f"| {s['busy_processes']} | {s['setting']}{timed} | {t} | {s['epoch_s']} | {s['wall_s']} | "
            f"{s['old_over_this']}x | {s['this_over_quiet_old']}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--busy", default="0,2", help="numbers of spinning processes, comma-separated")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds one training run may take")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "contention"))
    a = ap.parse_args()
    busy = [int(n) for n in a.busy.split(",")]
    start_load = os.getloadavg()
    rows, cpus = measure(busy, a.repeats, a.timeout)
    import torch

    others = [r["others_busy_cpus"] for r in rows if r["others_busy_cpus"] is not None] or [None]
    report = {
        "measured": datetime.datetime.now().isoformat(timespec="minutes"),
        "cpu": cpu().to_dict(),
        "usable_cpus": cpus,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": f"zoo {' '.join(TRAIN)}",
        "repeats": a.repeats,
        "loadavg_start": round(start_load[0], 2),
        "loadavg_end": round(os.getloadavg()[0], 2),
        "others_busy_cpus_min": min(others),
        "others_busy_cpus_max": max(others),
        "unclean_runs": sum(1 for r in rows if r["others_busy_cpus"] is None or r["others_busy_cpus"] > CLEAN),
        "summary": summarize(rows, busy),
        "runs": rows,
    }
    out = pathlib.Path(a.out)
    atomic.write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic.write_text(out.with_suffix(".md"), markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
