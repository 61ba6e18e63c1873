"""Issue 20's hostile and unlucky cases for the commands that write files, walk folders and share run
directories, run against this checkout and against the code of an earlier commit (--before REV) in the
same run: exit status, wall time and the child's peak RSS (wait4), and what became of the target.

Cases (each `python -m zoo ...` in a temporary folder, 127.0.0.1 is not involved):
- classify a folder that holds a symbolic link to / (killed after --walk-timeout seconds)
- classify -o FIFO (a reader thread reads it), -o a character device made with mknod (the null device's
  numbers, in the temporary folder; root only), -o a symbolic link to a file
- two `zoo train --output SAME` started together
- train onto a full disk (a 96 KiB tmpfs; root only)
- classify with a model whose card holds a 10 MB class name

Nothing here touches a system file: the device is a node of our own, the disk a tmpfs of our own.

    python scripts/attack_files.py --before 861babe     # -> benchmarks/attack_files.json, .md
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import stat
import subprocess
import tempfile
import threading
import time

from zoo import atomic
from zoo.child import checkout_of, measure_zoo, run_zoo
from zoo.hardware import cpu

ROOT = pathlib.Path(__file__).resolve().parents[1]


def model_and_digits(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A LeNet trained for one epoch and exported (this checkout), and a folder of 30 MNIST-small digits."""
    import numpy as np
    from PIL import Image

    from zoo.data.mnist import load_small

    run = tmp / "lenet"
    run_zoo(["train", "lenet", "--epochs", "1", "--amp", "off", "--output", str(run)], cwd=tmp)
    run_zoo(["export", str(run), "--onnx"], cwd=tmp)
    images, labels = load_small()["test"]
    digits = tmp / "digits"
    for d in range(10):
        (digits / str(d)).mkdir(parents=True)
        for i in np.flatnonzero(labels == d)[:3]:
            Image.fromarray(images[i]).save(digits / str(d) / f"{i}.png")
    return run, digits


def kind(path: pathlib.Path) -> str:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "FIFO" if stat.S_ISFIFO(mode) else "char device" if stat.S_ISCHR(mode) else "regular file"


def summary(r: dict) -> dict:
    lines = [line for line in r["output"].splitlines() if line.strip()]
    error = next((line for line in lines if line.startswith("Error:")), None)
    return {
        "exit": "killed" if r["killed"] else r["exit"],
        "wall_s": r["wall_s"],
        "peak_rss_mb": r["peak_rss_mb"],
        "traceback": any("Traceback" in line for line in lines),
        "stderr_lines": len(lines),
        "error": error[:160] if error else None,
    }


def walk_root(code, tmp, run, digits, timeout) -> dict:
    folder = tmp / "linked"
    folder.mkdir()
    (folder / "a.png").write_bytes((next((digits / "0").iterdir())).read_bytes())
    os.symlink("/", folder / "root")
    out = tmp / "walk.jsonl"
    r = measure_zoo(["classify", str(run), str(folder), "-o", str(out)], tmp, code, timeout=timeout)
    return {**summary(r), "results": len(out.read_text().splitlines()) if out.exists() else 0}


def to_fifo(code, tmp, run, digits, timeout) -> dict:
    fifo = tmp / "results.fifo"
    os.mkfifo(fifo)
    got = []

    def read():
        with open(fifo, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    r = measure_zoo(
        ["classify", str(run), str(digits), "-o", str(fifo), "--format", "jsonl"], tmp, code, timeout=timeout
    )
    reader.join(2)  # where the FIFO was replaced, its reader waits for a writer forever (a daemon thread)
    return {**summary(r), "target_after": kind(fifo), "reader_got_lines": len(got[0].splitlines()) if got else 0}


def to_device(code, tmp, run, digits, timeout) -> dict:
    if os.geteuid() != 0:
        return {"skipped": "mknod needs root"}
    dev = tmp / "null-device"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    r = measure_zoo(["classify", str(run), str(digits), "-o", str(dev)], tmp, code, timeout=timeout)
    return {**summary(r), "target_after": kind(dev)}


def to_symlink(code, tmp, run, digits, timeout) -> dict:
    real, link = tmp / "real.jsonl", tmp / "link.jsonl"
    real.write_text("")
    os.symlink(real, link)
    r = measure_zoo(["classify", str(run), str(digits), "-o", str(link)], tmp, code, timeout=timeout)
    return {**summary(r), "target_after": kind(link), "lines_in_the_linked_file": len(real.read_text().splitlines())}


def two_trains(code, tmp, run, digits, timeout) -> dict:
    out = tmp / "same"
    args = ["train", "lenet", "--epochs", "1", "--amp", "off", "--output", str(out)]
    results = [None, None]

    def one(i):
        results[i] = measure_zoo(args + ["--seed", str(i)], tmp, code, timeout=timeout)

    threads = [threading.Thread(target=one, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"exits": sorted(r["exit"] for r in results), "errors": [summary(r)["error"] for r in results]}


def full_disk(code, tmp, run, digits, timeout) -> dict:
    if os.geteuid() != 0:
        return {"skipped": "mounting a tmpfs needs root"}
    disk = tmp / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)]).returncode:
        return {"skipped": "cannot mount a tmpfs here"}
    try:
        args = ["train", "lenet", "--epochs", "1", "--amp", "off", "--output", str(disk / "run")]
        return summary(measure_zoo(args, tmp, code, timeout=timeout))
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def huge_label(code, tmp, run, digits, timeout) -> dict:
    big = tmp / "big-label"
    big.mkdir()
    for name in ("model.safetensors", "card.json"):
        (big / name).write_bytes((run / name).read_bytes())
    card = json.loads((big / "card.json").read_text())
    card["class_names"][0] = "x" * 10_000_000
    (big / "card.json").write_text(json.dumps(card))
    out = tmp / "big.jsonl"
    r = measure_zoo(
        ["classify", str(big / "model.safetensors"), str(digits / "0"), "-o", str(out)], tmp, code, timeout=timeout
    )
    return {**summary(r), "output_bytes": out.stat().st_size if out.exists() else 0}


CASES = {
    "classify a folder holding a link to /": walk_root,
    "classify -o FIFO": to_fifo,
    "classify -o a character device": to_device,
    "classify -o a symlink to a file": to_symlink,
    "two `zoo train --output SAME` at once": two_trains,
    "train onto a full disk (96 KiB tmpfs)": full_disk,
    "classify with a 10 MB class name in the card": huge_label,
}


def attack(code: pathlib.Path | None, tmp: pathlib.Path, run, digits, timeout: float) -> dict:
    results = {}
    for name, case in CASES.items():
        where = pathlib.Path(tempfile.mkdtemp(dir=tmp))
        started = time.perf_counter()
        results[name] = case(code, where, run, digits, timeout)
        print(f"{name}: {results[name]} ({time.perf_counter() - started:.1f} s)", flush=True)
    return results


def markdown(result: dict) -> str:
    c = result["cpu"]
    lines = [
        "# Issue 20's file, folder and run-directory cases",
        "",
        f"{c['name']}, {c['cores']} CPUs, flags {' '.join(c['flags'])}; {result['date']}; "
        f"`python scripts/attack_files.py --before {result['before_rev']}`: each case as a `python -m zoo` child "
        "(wait4's peak RSS), with this checkout and with the code before, one after the other.",
        "",
        "| case | code | outcome |",
        "| --- | --- | --- |",
    ]
    for name in CASES:
        for label in ("before", "after"):
            r = result[label].get(name)
            if r is not None:
                lines.append(f"| {name} | {label} | {json.dumps(r)[:400].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="REV", required=True, help="the code before the fixes")
    ap.add_argument("--walk-timeout", type=float, default=20.0, help="seconds before a command is killed")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="zoo-attack-files-") as tmp:
        tmp = pathlib.Path(tmp)
        run, digits = model_and_digits(tmp)
        before = checkout_of(args.before, tmp / "before-code")
        result = {
            "cpu": cpu().to_dict(),
            "date": time.strftime("%Y-%m-%d"),
            "before_rev": args.before,
            "after": attack(None, tmp, run, digits, args.walk_timeout),
            "before": attack(before, tmp, run, digits, args.walk_timeout),
        }
    atomic.write_text(args.out / "attack_files.json", json.dumps(result, indent=1) + "\n")
    atomic.write_text(args.out / "attack_files.md", markdown(result))


if __name__ == "__main__":
    main()
