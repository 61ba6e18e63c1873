"""`zoo bench` and infer/bench.py: the report's schema, its CSV and table forms, the baseline, skipped
pairs and user errors. Budgets are tiny and nothing asserts a timing (timings belong in benchmarks/)."""

import csv
import io
import json
import pathlib
import subprocess
import sys

import pytest
from click.testing import CliRunner

from infer.bench import CSV_COLUMNS, ROW_FIELDS, SCHEMA, BenchError, format_table, run_bench
from infer.predictor import BACKENDS
from zoo.card import PRECISIONS
from zoo.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Tiny budgets: one untimed and at least two timed calls per (runtime, precision, batch size).
FAST = ["--seconds", "0.02", "--warmup", "0", "--min-iterations", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """A LeNet run with random weights, exported to model.onnx and model.fp16.onnx."""
    import torch

    from export.onnx import export_run
    from zoo import rundir
    from zoo.card import ModelCard
    from zoo.models import create

    run = tmp_path_factory.mktemp("bench") / "lenet5-bench"
    run.mkdir()
    card = ModelCard.for_model("lenet")
    torch.manual_seed(0)
    rundir.save_weights(run / rundir.WEIGHTS, create(card.architecture))
    card.save(run / rundir.CARD)
    export_run(run, fp16=True, log=None)
    return run


def bench(*args):
    return CliRunner().invoke(main, ["bench", *map(str, args)])


@pytest.fixture(scope="module")
def report(lenet):
    """`zoo bench` of every runtime and precision, as JSON."""
    r = bench(lenet, "--format", "json", "--batch-size", "1,4", *FAST)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_json_schema(report, lenet):
    assert report["schema"] == SCHEMA
    assert report["model"] == "lenet5-bench" and report["path"] == str(lenet)
    assert report["architecture"] == "lenet5" and report["input_shape"] == [1, 28, 28]
    assert report["num_classes"] == 10
    assert report["batch_sizes"] == [1, 4] and report["threads"] == 1
    assert {"name", "flags", "cores", "machine"} <= set(report["cpu"]) and isinstance(report["cpu"]["flags"], list)
    versions = report["versions"]
    assert {"python", "numpy", "cnnzoo", "onnxruntime", "openvino", "torch", "tensorrt"} <= set(versions)
    assert versions["onnxruntime"] and versions["torch"]  # both installed wherever the tests run
    assert isinstance(report["date"], str) and set(report["load_average"]) == {"start", "end"}
    assert report["baseline"] == {
        "runtime": "onnxruntime",
        "precision": "fp32",
        "file": str(lenet / "model.onnx"),
        "problem": None,
    }
    assert report["rows"]
    for row in report["rows"]:
        assert tuple(row) == ROW_FIELDS
        assert row["runtime"] in BACKENDS and row["precision"] in PRECISIONS and row["batch_size"] in (1, 4)
        assert row["iterations"] >= 2 and row["img_s"] > 0 and row["seconds"] > 0
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["mean_ms"] > 0
        assert isinstance(row["speedup"], float) and row["speedup"] > 0
    for s in report["skipped"]:
        assert set(s) == {"runtime", "precision", "reason"} and s["reason"]
    # every pair is either measured at every batch size or skipped with its reason
    measured = {(r["runtime"], r["precision"]) for r in report["rows"]}
    skipped = {(s["runtime"], s["precision"]) for s in report["skipped"]}
    assert measured.isdisjoint(skipped) and measured | skipped == {(b, p) for b in BACKENDS for p in PRECISIONS}
    assert len(report["rows"]) == 2 * len(measured)
    assert [r["batch_size"] for r in report["rows"]] == sorted(r["batch_size"] for r in report["rows"])


def test_baseline_is_measured_and_its_speedup_is_one(report):
    base = [r for r in report["rows"] if r["baseline"]]
    assert [(r["runtime"], r["precision"], r["batch_size"]) for r in base] == [
        ("onnxruntime", "fp32", 1),
        ("onnxruntime", "fp32", 4),
    ]
    assert all(r["speedup"] == 1.0 for r in base)  # x / x is exactly 1.0 in IEEE arithmetic
    first = [r for r in report["rows"] if r["batch_size"] == 1][0]
    assert first["baseline"]  # each batch size's rows start with the baseline


def test_unrunnable_pairs_are_skipped_with_their_reason(report):
    reasons = {(s["runtime"], s["precision"]): s["reason"] for s in report["skipped"]}
    assert "bfloat16" in reasons["onnxruntime", "bf16"]
    assert "--int8" in reasons["onnxruntime", "int8"]  # no model.int8.onnx in this run
    assert ("torch", "int8") in reasons and ("tensorrt", "bf16") in reasons


def test_csv_parses(lenet):
    r = bench(lenet, "--runtime", "onnxruntime", "--precision", "fp32", "--format", "csv", *FAST)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(x["runtime"], x["precision"], x["batch_size"]) for x in rows] == [
        ("onnxruntime", "fp32", "1"),
        ("onnxruntime", "fp32", "32"),
    ]
    assert all(x["model"] == "lenet5-bench" and x["architecture"] == "lenet5" for x in rows)
    assert all(float(x["speedup"]) == 1.0 and float(x["img_s"]) > 0 for x in rows)  # x / x: exact


def test_table_and_output_file(lenet, tmp_path, report):
    out = tmp_path / "bench.json"
    r = bench(lenet, "-r", "onnxruntime", "-p", "fp32", "-b", "2", "--output", out, *FAST)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["rows"][0]["batch_size"] == 2  # the format follows the suffix
    table = format_table(report)
    assert report["cpu"]["name"] in table and "vs ORT fp32" in table and "skipped:" in table
    assert all(f in table for f in report["cpu"]["flags"])
    assert "bf16 on onnxruntime: " in table


def test_baseline_is_measured_when_not_named(lenet):
    report = run_bench(
        lenet,
        runtimes=["torch"],
        precisions=["fp32"],
        batch_sizes=[2],
        threads=1,
        seconds=0,
        warmup=0,
        min_iterations=1,
    )
    assert [(r["runtime"], r["baseline"]) for r in report["rows"]] == [("onnxruntime", True), ("torch", False)]
    assert report["rows"][1]["speedup"] > 0


def test_model_file_without_baseline(lenet):
    """An fp16 file alone has no ONNX Runtime fp32 to compare with: rows without speed-ups, and why."""
    report = run_bench(
        lenet / "model.fp16.onnx",
        runtimes=["onnxruntime"],
        batch_sizes=[1],
        threads=1,
        seconds=0,
        warmup=0,
        min_iterations=1,
    )
    assert report["baseline"]["problem"] and "no file for fp32" in report["baseline"]["problem"]
    assert [(r["precision"], r["speedup"]) for r in report["rows"]] == [("fp16", None)]
    assert "no speed-ups" in format_table(report)


def test_bad_model_path_is_one_line(tmp_path):
    r = bench(tmp_path / "nope", *FAST)
    assert r.exit_code != 0
    assert r.output.strip().count("\n") == 0 and "no such run directory or model file" in r.output  # the MODEL rule
    empty = tmp_path / "empty"
    empty.mkdir()
    r = bench(empty, *FAST)
    assert r.exit_code != 0 and r.output.strip().count("\n") == 0 and "Error:" in r.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["--runtime", "tensorrt"], "runtime tensorrt cannot run here"),  # no engine here, nor (maybe) a GPU
        (["--precision", "int8"], "precision int8 cannot run here"),  # no model.int8.onnx
        (["--runtime", "onnxruntime", "--precision", "bf16"], "cannot run here"),
    ],
)
def test_named_pair_that_cannot_run_is_one_line(lenet, args, words):
    r = bench(lenet, *args, *FAST)
    assert r.exit_code == 1, r.output
    assert r.output.strip().count("\n") == 0 and words in r.output


def test_bad_options_are_usage_errors(lenet):
    for args in (
        ["--runtime", "onnxruntime,tflite"],
        ["--precision", "fp8"],
        ["--batch-size", "0"],
        ["--batch-size", "a,b"],
    ):
        r = bench(lenet, *args)
        assert r.exit_code == 2, (args, r.output)


def test_library_errors():
    with pytest.raises(BenchError, match="unknown runtime"):
        run_bench("whatever", runtimes=["tflite"])
    with pytest.raises(BenchError, match="batch sizes"):
        run_bench("whatever", batch_sizes=[0])


def test_versions_import_nothing():
    code = (
        "import sys\nfrom infer.bench import versions\nv = versions()\nassert v['onnxruntime'], v\n"
        "heavy = {'torch', 'onnxruntime', 'openvino', 'tensorrt'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
