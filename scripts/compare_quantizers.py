"""Which int8 quantizer for `zoo export --int8`: ONNX Runtime's calibration methods and NNCF, on our models.

    python scripts/compare_quantizers.py                      # trains the two models once under --work
    python scripts/compare_quantizers.py --work /tmp/cnnzoo-quantize --images 300 --seconds 3

The models (trained once with these exact commands, then reused from --work):
  lenet     zoo train lenet --data mnist-small --epochs 8                  held out: mnist-small's 2,000 test images
  resnet18  zoo train resnet18 --data hymenoptera/train --val hymenoptera/val --input-size 224 --epochs 8
            --batch-size 32 --lr 0.01 --augment hflip,rotate=10,zoom=0.1   held out: the 153 validation photos
For each: model.onnx (`export_run`), the calibration images `zoo export --int8` takes (300, seeded and
stratified from the run's own training split: `export.quantize.calibration_images`) and its held-out
split (`held_out_images`). Then per quantizer: the QDQ file, its top-1 on ONNX Runtime and on OpenVINO
(through `zoo.train.evaluate`, as `--int8` verifies), top-1 agreement with fp32 and the relative logit
error ||int8 - fp32|| / ||fp32|| (finer than accuracy on 153 photos, where one photo is 0.65 points), and
the seconds it took. Quantizers:
  ort-*       onnxruntime.quantization.quantize_static, QDQ, int8 per-channel symmetric weights, float bias,
              uint8 asymmetric activations (what `--int8` writes), calibration minmax / entropy / percentile
  ort-*-s8    the same with int8 symmetric activations (zero point 0: the variant `--trt --int8` builds from)
  nncf        nncf.quantize on the ONNX model, same calibration images (defaults: preset performance, fast
              bias correction; uint8 after ReLU, which TensorRT refuses)
  nncf-int8   nncf.quantize with signed int8 activations forced (the form TensorRT takes)
NNCF is not a dependency: `pip install nncf` first (rows marked not run otherwise).
Speed (indicative: shared CPU): ONNX Runtime and OpenVINO img/s of fp32 and of each int8 file at one batch
size per model (infer.bench.measure). Writes benchmarks/quantize.json and benchmarks/quantize.md.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]

HYMENOPTERA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
MODELS = {
    "lenet": {"train": ["lenet", "--data", "mnist-small", "--epochs", "8"], "batch": 256},
    "resnet18": {
        "train": [
            "resnet18",
            "--data",
            str(HYMENOPTERA / "train"),
            "--val",
            str(HYMENOPTERA / "val"),
            "--input-size",
            "224",
            "--epochs",
            "8",
            "--batch-size",
            "32",
            "--lr",
            "0.01",
            "--augment",
            "hflip,rotate=10,zoom=0.1",
        ],
        "batch": 32,
    },
}
METHODS = ("minmax", "entropy", "percentile")


def train(work: pathlib.Path, name: str) -> pathlib.Path:
    run = work / name
    if (run / "card.json").is_file() and json.loads((run / "card.json").read_text())["provenance"].get("finished"):
        return run
    cmd = [sys.executable, "-m", "zoo", "train", *MODELS[name]["train"], "--output", str(run)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return run


def logits_of(predictor, card, image_set):
    """(Evaluation, logits [N, classes]) through the one evaluation."""
    import torch

    from zoo.train.evaluate import evaluate

    parts = []

    def model(x):
        out = predictor.predict(x.numpy())
        parts.append(out)
        return torch.from_numpy(out)

    result = evaluate(model, card, image_set, batch_size=32)
    return result, np.concatenate(parts)


def save_variant(proto_or_path, card, folder: pathlib.Path) -> pathlib.Path:
    """The QDQ model as model.int8.onnx with an int8 card, so `infer.load` runs it as any export."""
    import onnx

    from export.onnx import set_card
    from zoo.rundir import ONNX_INT8

    proto = onnx.load(str(proto_or_path)) if not isinstance(proto_or_path, onnx.ModelProto) else proto_or_path
    qcard = copy.deepcopy(card)
    qcard.precision = "int8"
    qcard.provenance["quantization"] = {"comparison": folder.name}
    set_card(proto, qcard)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ONNX_INT8
    onnx.save(proto, str(path))
    return path


def quantizers(src, card, calib_set, images: int):
    """name -> (description, function(folder) -> path of the QDQ file | raises)."""
    from export.quantize import CalibrationReader, quantize_file

    def ort(method, symmetric):
        def run(folder):
            tmp = folder / "raw.onnx"
            folder.mkdir(parents=True, exist_ok=True)
            quantize_file(src, tmp, CalibrationReader(calib_set, card), method, symmetric=symmetric)
            return save_variant(tmp, card, folder)

        return run

    def nncf_(signed):
        def run(folder):
            import logging

            import nncf
            import onnx
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

            from zoo.data.datasets import standardize, to_unit

            logging.getLogger("nncf").setLevel(logging.ERROR)
            x = standardize(to_unit(calib_set.images), card).numpy()
            dataset = nncf.Dataset([x[i : i + 1] for i in range(len(x))], lambda item: {"input": item})
            advanced = (
                AdvancedQuantizationParameters(
                    activations_quantization_params=QuantizationParameters(signedness_to_force=True)
                )
                if signed
                else None
            )
            q = nncf.quantize(onnx.load(str(src)), dataset, subset_size=len(x), advanced_parameters=advanced)
            return save_variant(q, card, folder)

        return run

    out = {}
    for m in METHODS:
        out[f"ort-{m}"] = (
            f"ONNX Runtime quantize_static, {m}, uint8 asymmetric activations (what --int8 writes)",
            ort(m, False),
        )
    for m in METHODS:
        out[f"ort-{m}-s8"] = (
            f"ONNX Runtime quantize_static, {m}, int8 symmetric activations (the TensorRT variant)",
            ort(m, True),
        )
    out["nncf"] = ("nncf.quantize defaults (uint8 after ReLU, fast bias correction)", nncf_(False))
    out["nncf-int8"] = ("nncf.quantize, signed int8 activations forced", nncf_(True))
    return out


def tensorrt_ready(path) -> str | None:
    from export.tensorrt import qdq_problem

    why = qdq_problem(path)
    return None if why is None else why.split(": ", 1)[-1]


def compare(name: str, run: pathlib.Path, images: int, seconds: float, scratch: pathlib.Path) -> dict:
    import infer
    from export.onnx import export_run
    from export.quantize import calibration_images, decode, held_out_images
    from infer.bench import measure
    from infer.predictor import installed

    onnx_path = export_run(run, log=None)["onnx"]
    card = infer.load(onnx_path, "onnxruntime", precision="fp32").card
    calib = calibration_images(card, None, images)
    held = held_out_images(card)
    calib_set, _ = decode(calib, card, "calibration")
    held_set, _ = decode(held, card, "held-out")
    runtimes = [r for r in ("onnxruntime", "openvino") if installed(r)]
    batch = np.random.default_rng(0).standard_normal((MODELS[name]["batch"], *card.input_shape)).astype(np.float32)

    def speed(path, runtime, precision):
        p = infer.load(path, runtime, precision=precision, threads=2)
        return round(measure(p.predict, batch, seconds)["img_s"], 1)

    ref_eval, ref = logits_of(infer.load(onnx_path, "onnxruntime", precision="fp32"), card, held_set)
    result = {
        "run": str(run),
        "architecture": card.architecture,
        "training": MODELS[name]["train"],
        "calibration": {"source": calib.data, "split": calib.split, "images": len(calib_set), "seed": calib.seed},
        "held_out": {"data": held.data, "split": held.split, "n": len(held_set)},
        "fp32": {
            "top1": ref_eval.accuracy,
            "img_s": {r: speed(onnx_path, r, "fp32") for r in runtimes},
            "speed_batch": len(batch),
        },
        "quantizers": {},
    }
    print(f"{name}: fp32 top-1 {100 * ref_eval.accuracy:.2f}% on {len(held_set)} {held.split} images", flush=True)
    for key, (description, make) in quantizers(onnx_path, card, calib_set, images).items():
        row = {"description": description}
        try:
            t = time.perf_counter()
            path = make(scratch / name / key)
            row["seconds"] = round(time.perf_counter() - t, 1)
        except ImportError as e:
            row["error"] = f"not run: {e}"
        except Exception as e:  # NNCF refuses some settings: say so in the table
            if not key.startswith("nncf"):
                raise
            row["error"] = "failed: " + " ".join(str(e).split())[:200]
        if "error" in row:
            result["quantizers"][key] = row
            print(f"  {key}: {row['error']}", flush=True)
            continue
        row["top1"], row["agreement"], row["logit_error"], row["img_s"] = {}, {}, {}, {}
        for r in runtimes:
            ev, logits = logits_of(infer.load(path, r, precision="int8"), card, held_set)
            row["top1"][r] = ev.accuracy
            row["agreement"][r] = float(np.mean(logits.argmax(1) == ref.argmax(1)))
            row["logit_error"][r] = float(np.linalg.norm(logits - ref) / np.linalg.norm(ref))
            row["img_s"][r] = speed(path, r, "int8")
        row["worst_drop_points"] = round(100 * (ref_eval.accuracy - min(row["top1"].values())), 2)
        row["tensorrt"] = tensorrt_ready(path) or "ok"
        result["quantizers"][key] = row
        print(
            f"  {key}: top-1 "
            + ", ".join(f"{r} {100 * a:.2f}%" for r, a in row["top1"].items())
            + f"; logit error {row['logit_error']['onnxruntime']:.4f}; {row['seconds']}s; img/s {row['img_s']}",
            flush=True,
        )
    return result


def choose(models: dict) -> dict:
    """The default method: among ONNX Runtime's rows of the file `--int8` writes, the lowest worst-case
    top-1 drop over the models and runtimes, then the lowest mean relative logit error."""

    def score(method):
        rows = [m["quantizers"][f"ort-{method}"] for m in models.values()]
        return (
            max(r["worst_drop_points"] for r in rows),
            float(np.mean([np.mean(list(r["logit_error"].values())) for r in rows])),
        )

    scores = {m: score(m) for m in METHODS}
    best = min(METHODS, key=lambda m: scores[m])
    return {
        "method": best,
        "scores": {m: {"worst_drop_points": s[0], "mean_logit_error": round(s[1], 5)} for m, s in scores.items()},
    }


def _short(text: str) -> str:
    """A path under the shared folder beside the checkout, as datasets/...; anything else as it is."""
    shared = str(ROOT.parent / "shared") + "/"
    return text[len(shared) :] if text.startswith(shared) else text


def _row(model: dict, key: str) -> dict | None:
    row = model["quantizers"].get(key)
    return None if row is None or "error" in row else row


def why(report: dict) -> list[str]:
    """The reasons behind the choices, in words, from the numbers above."""
    method = report["choice"]["method"]
    out = ["## Why", ""]
    for name, m in report["models"].items():
        u8, s8 = _row(m, f"ort-{method}"), _row(m, f"ort-{method}-s8")
        fp32 = m["fp32"]["img_s"]
        if u8 and s8 and "onnxruntime" in fp32:
            out.append(
                f"- **Activations** ({name}): ONNX Runtime ran the symmetric-int8 file at "
                f"{s8['img_s']['onnxruntime']:,.0f} img/s and the uint8 one at {u8['img_s']['onnxruntime']:,.0f} "
                f"(fp32: {fp32['onnxruntime']:,.0f})"
                + (
                    f"; OpenVINO {s8['img_s']['openvino']:,.0f} and {u8['img_s']['openvino']:,.0f} (fp32 "
                    f"{fp32['openvino']:,.0f})"
                    if "openvino" in fp32
                    else ""
                )
                + f"; logit error {s8['logit_error']['onnxruntime']:.4f} (int8) vs "
                f"{u8['logit_error']['onnxruntime']:.4f} (uint8)."
            )
    out += [
        "  On x86, ONNX Runtime's fast int8 kernels take uint8 activations (its own guidance for VNNI CPUs);",
        "  with int8 activations it keeps many convolutions in float between Q/DQ pairs and loses the gain.",
        "  So the file `--int8` writes, the one ONNX Runtime and OpenVINO run, has uint8 activations with a",
        "  zero point. TensorRT takes symmetric int8 only (zero point 0): `--trt --int8` quantizes that",
        "  variant from the same calibration images, verifies it the same way, and builds the engine from it.",
        "- **Library**: ONNX Runtime's `quantize_static` (already a dependency) against NNCF on the same",
        "  images: "
        + "; ".join(
            f"{name}: ort-{method} {_fmt_change(_row(m, f'ort-{method}'))}, nncf {_fmt_change(_row(m, 'nncf'))}"
            for name, m in report["models"].items()
        )
        + ".",
        "  NNCF's files put uint8 after every ReLU (TensorRT refuses them) and forcing signed int8 is refused",
        "  by its own hardware configuration (row nncf-int8); it brings scipy, scikit-learn and more. Where the",
        "  two are alike in accuracy, the tool we already depend on, which writes both forms, wins.",
        "- **Method**: ONNX Runtime's `entropy` builds its histograms with 128 bins (quantize_static does not",
        "  pass num_bins through) and clips hardest: the largest logit error on both models. `minmax` and",
        "  `percentile` (99.999th percentile of |x|, 2048 bins) are close; the table above decides.",
        "- **Pre-processing**: `quant_pre_process` is not run: on our exports (shape-inferred by the exporter,",
        "  batch norm already folded into the convolutions) it changed nothing in the quantized graph.",
        "- **Noise**: one photo of the 153 resnet18 validation photos is 0.65 points, so top-1 moves in steps",
        "  of 0.65; agreement with fp32 and the logit error are the finer measures. Speeds are indicative:",
        f"  a shared {report['cpu'].get('cores')}-core machine, 2 threads, `infer.bench.measure` for "
        f"{report.get('seconds', '?')} s per file.",
        "",
    ]
    return out


def _fmt_change(row: dict | None) -> str:
    if row is None:
        return "not run"
    return (
        f"{-row['worst_drop_points'] + 0.0:+.2f} points, logit error "
        f"{row['logit_error'].get('onnxruntime', float('nan')):.4f}"
    )


def markdown(report: dict) -> str:
    from infer.bench import cpu_line

    lines = [
        "# int8 quantization: which quantizer, which calibration",
        "",
        f"Measured {report['date'][:10]} by `python scripts/compare_quantizers.py` "
        f"({report['images']} calibration images; {report['versions']}; 1-minute load average "
        f"{report['load_average']['start']} at the start, {report['load_average']['end']} at the end).",
        f"{cpu_line(report['cpu'])}.",
        "",
    ]
    for name, m in report["models"].items():
        runtimes = list(m["fp32"]["img_s"])
        lines += [
            f"## {name}: {m['architecture']}, held out: {m['held_out']['n']:,} {m['held_out']['split']} "
            f"images of `{_short(m['held_out']['data'])}`",
            "",
            f"Trained with `zoo train {' '.join(_short(a) for a in m['training'])}`; "
            f"calibrated on {m['calibration']['images']} images of its {m['calibration']['split']} split "
            f"(seed {m['calibration']['seed']}). fp32 (ONNX Runtime): top-1 "
            f"**{100 * m['fp32']['top1']:.2f}%**; img/s at batch {m['fp32']['speed_batch']}: "
            + ", ".join(f"{r} {v:,.0f}" for r, v in m["fp32"]["img_s"].items())
            + ".",
            "",
            "| quantizer | "
            + " | ".join(f"top-1 {r}" for r in runtimes)
            + " | change (points, worst runtime) | agreement with fp32 | logit error | "
            + " | ".join(f"img/s {r}" for r in runtimes)
            + " | seconds | TensorRT |",
            "|---|" + "---:|" * (2 * len(runtimes) + 4) + "---|",
        ]
        for key, row in m["quantizers"].items():
            if "error" in row:
                lines.append(f"| {key} | {row['error']} |" + " |" * (2 * len(runtimes) + 4))
                continue
            lines.append(
                f"| {key} | "
                + " | ".join(f"{100 * row['top1'][r]:.2f}%" for r in runtimes)
                + f" | {-row['worst_drop_points'] + 0.0:+.2f} | "
                f"{100 * row['agreement']['onnxruntime']:.2f}% | "
                f"{row['logit_error']['onnxruntime']:.4f} | "
                + " | ".join(f"{row['img_s'][r]:,.0f}" for r in runtimes)
                + f" | {row['seconds']} | {'yes' if row['tensorrt'] == 'ok' else 'no'} |"
            )
        lines.append("")
    c = report["choice"]
    lines += [
        "## Choice of the default method",
        "",
        "| method (ONNX Runtime, the `--int8` file) | worst top-1 change over models and runtimes (points) | "
        "mean logit error |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {m} | {-s['worst_drop_points'] + 0.0:+.2f} | {s['mean_logit_error']:.4f} |" for m, s in c["scores"].items()
    ]
    lines += [
        "",
        f"Measured best: **{c['method']}** (the smallest worst-case loss of top-1, then the smallest "
        "logit error): the default of `--calibration-method`.",
        "",
    ]
    lines += why(report)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work",
        type=pathlib.Path,
        default=pathlib.Path(tempfile.gettempdir()) / "cnnzoo-quantize",
        help="where the two runs are trained once and reused",
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: lenet,resnet18")
    parser.add_argument("--images", type=int, default=300, help="calibration images")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per file and runtime")
    parser.add_argument(
        "--out", type=pathlib.Path, default=ROOT / "benchmarks" / "quantize", help="writes OUT.json and OUT.md"
    )
    parser.add_argument(
        "--render",
        type=pathlib.Path,
        default=None,
        metavar="JSON",
        help="only write OUT.md again from a report this script wrote (no measuring)",
    )
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(args.render.read_text())
        args.out.with_suffix(".md").write_text(markdown(report))
        print(f"wrote {args.out.with_suffix('.md')}")
        return

    import onnxruntime

    from infer.predictor import installed
    from zoo.hardware import cpu

    versions = f"onnxruntime {onnxruntime.__version__}"
    if installed("openvino"):
        import openvino

        versions += f", openvino {openvino.__version__.split('-')[0]}"
    if installed("nncf"):
        import nncf

        versions += f", nncf {nncf.__version__}"
    args.work.mkdir(parents=True, exist_ok=True)
    from infer.bench import _loadavg

    load = {"start": _loadavg()}
    models = {}
    with tempfile.TemporaryDirectory(prefix="compare-quantizers-") as scratch:
        for name in args.models.split(","):
            models[name] = compare(name, train(args.work, name), args.images, args.seconds, pathlib.Path(scratch))
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu().to_dict(),
        "versions": versions,
        "images": args.images,
        "seconds": args.seconds,
        "load_average": {**load, "end": _loadavg()},
        "models": models,
        "choice": choose(models) if len(models) > 0 else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(
        f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}; "
        f"measured best method: {report['choice']['method']}"
    )


if __name__ == "__main__":
    main()
