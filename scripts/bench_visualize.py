"""How long `zoo visualize` takes, per model, on this machine's CPU.

For each model (random weights, its default input size, every default layer): the whole command as a
user runs it (`python -m zoo visualize NAME IMAGE`, a fresh process: imports, model creation, page), and
in-process the page alone (forward pass with hooks + figures + files) against the baseline of one plain
forward pass of the same model on the same input, measured in the same run.

    python scripts/bench_visualize.py [--models lenet5,resnet18,googlenet,vgg16] [--image PHOTO]

Writes benchmarks/visualize.json and benchmarks/visualize.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared/datasets/hymenoptera/val/bees/2103637821_8d26ee6b90.jpg"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,resnet18,googlenet,vgg16")
    ap.add_argument("--image", type=pathlib.Path, default=DEFAULT_IMAGE)
    ap.add_argument("--repeat", type=int, default=3, help="forward passes for the baseline (median)")
    args = ap.parse_args()

    import torch

    from zoo.data.preprocess import preprocess
    from zoo.viz.report import build, open_model, write

    rows = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "zoo", "visualize", name, str(args.image), "--output", f"{tmp}/cli"],
                check=True,
                capture_output=True,
            )
            command_s = time.perf_counter() - t

            model, card, run_dir, source = open_model(name)
            x = torch.from_numpy(preprocess(args.image, card))[None]
            forward = []
            with torch.no_grad():
                model(x)  # warm-up
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    model(x)
                    forward.append(time.perf_counter() - t)
            forward_s = statistics.median(forward)
            t = time.perf_counter()
            report = build(model, card, args.image, source=source)
            page = write(report, f"{tmp}/page")
            page_s = time.perf_counter() - t
            rows.append(
                {
                    "model": name,
                    "input": card.input_shape,
                    "layers": len(report.layers),
                    "figures": len(report.figures()),
                    "page_mib": page.stat().st_size / 2**20,
                    "command_s": command_s,
                    "page_s": page_s,
                    "forward_s": forward_s,
                    "page_over_forward": page_s / forward_s,
                }
            )
            r = rows[-1]
            print(
                f"{name}: command {command_s:.1f} s, page {page_s:.2f} s = "
                f"{r['page_over_forward']:.0f}x one forward pass ({forward_s * 1000:.0f} ms)",
                flush=True,
            )

    out = ROOT / "benchmarks"
    out.mkdir(exist_ok=True)
    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "image": args.image.name,
        "load_average_1min": os.getloadavg()[0],
    }  # other work on the machine slows every column
    (out / "visualize.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# zoo visualize: time per page (CPU, random weights, default layers)",
        "",
        f"{meta['cpus']} CPUs, torch {meta['torch']} ({meta['threads']} threads), image "
        f"{meta['image']}, load average {meta['load_average_1min']:.1f} at the end. "
        "`command`: the whole `python -m zoo visualize NAME IMAGE` in a fresh process. "
        "`page`: the page alone in-process; the baseline is one plain forward pass of the same model.",
        "",
        "| model | input | layers | figures | page MiB | command s | page s | forward ms | page / forward |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['model']} | {'x'.join(map(str, r['input']))} | {r['layers']} | {r['figures']} | "
        f"{r['page_mib']:.1f} | {r['command_s']:.1f} | {r['page_s']:.2f} | {r['forward_s'] * 1000:.0f} | "
        f"{r['page_over_forward']:.0f}x |"
        for r in rows
    ]
    (out / "visualize.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'visualize.json'} and {out / 'visualize.md'}")


if __name__ == "__main__":
    main()
