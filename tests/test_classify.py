"""`zoo classify` over real folders: order, hidden files, labels from folder names, errors, formats."""

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tolerances import probability_atol

import infer
from infer.classify import classify_paths
from zoo.answer import softmax
from zoo.cli import main
from zoo.data.preprocess import preprocess
from zoo.data.walk import collect


@pytest.fixture
def digits_run(exported_lenet):
    return exported_lenet("digits", class_names=[str(i) for i in range(10)])


@pytest.fixture
def folder(tmp_path):
    """digits/3/*.png, digits/7/*.png, digits/unsorted/*.png, a broken image, a text file, hidden files."""
    rng = np.random.default_rng(0)
    root = tmp_path / "digits"
    for sub, n in (("7", 3), ("3", 4), ("unsorted", 2)):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (28 + i, 30, 3), dtype=np.uint8)).save(root / sub / f"{i}.png")
    (root / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "3" / "notes.txt").write_text("not an image")
    (root / "3" / ".hidden.png").write_bytes((root / "3" / "0.png").read_bytes())
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes((root / "3" / "0.png").read_bytes())
    return root


def zoo(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_collect_is_sorted_recursive_and_skips_hidden(folder):
    files, skipped = collect([folder])
    rel = [str(f.relative_to(folder)) for f in files]
    assert rel == [
        "3/0.png",
        "3/1.png",
        "3/2.png",
        "3/3.png",
        "3/broken.png",
        "7/0.png",
        "7/1.png",
        "7/2.png",
        "unsorted/0.png",
        "unsorted/1.png",
    ]
    assert skipped == [(folder / "3" / "notes.txt", "no image extension")]
    files, _ = collect([folder / "3" / "notes.txt", folder / "7"])  # a file named directly is taken
    assert files[0].name == "notes.txt" and len(files) == 4


@pytest.mark.parametrize("workers", [0, 2])
def test_jsonl_results_match_the_predictor(digits_run, folder, tmp_path, workers):
    out = tmp_path / "out.jsonl"
    r = zoo("classify", digits_run, folder, "--top-k", 10, "--batch-size", 3, "--workers", workers, "--output", out)
    assert r.exit_code == 1, r.output  # broken.png failed; the run went on
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10
    by_name = {str(__import__("pathlib").Path(row["path"]).relative_to(folder)): row for row in rows}
    broken = by_name.pop("3/broken.png")
    assert "error" in broken and "not a readable image" in broken["error"] and "top_k" not in broken
    predictor = infer.load(digits_run, "onnxruntime")
    x = np.stack([preprocess(folder / name, predictor.card) for name in by_name])
    logits = predictor.predict(x)
    probs = softmax(logits)
    for (name, row), p in zip(by_name.items(), probs):
        assert all(list(t) == ["label", "index", "probability"] and t["label"] == str(t["index"]) for t in row["top_k"])
        got = {t["label"]: t["probability"] for t in row["top_k"]}
        assert list(got.values()) == sorted(got.values(), reverse=True)
        # batches of 3 vs one of 9, another thread count, 6 decimals: probability_atol (random LeNet,
        # logits ~0.13: 4e-6); these near-uniform probabilities move 6e-4 for a swapped class, 9e-4 for another image
        np.testing.assert_allclose([got[str(i)] for i in range(10)], p, atol=probability_atol(logits), rtol=0)
        folder_name = name.split("/")[0]
        if folder_name == "unsorted":
            assert "true_label" not in row and "correct" not in row
        else:
            assert row["true_label"] == folder_name
            assert row["correct"] == (row["top_k"][0]["label"] == folder_name)
    labelled = [row for row in by_name.values() if "true_label" in row]
    accuracy = sum(row["correct"] for row in labelled) / len(labelled)
    assert f"accuracy: {accuracy:.2%} ({sum(r['correct'] for r in labelled)}/7 " in r.output
    assert "10 images" in r.output and "1 unreadable" in r.output
    assert f"1 file skipped ({folder / '3' / 'notes.txt'}: no image extension)" in r.output


def test_csv_and_table_to_stdout(digits_run, folder):
    r = zoo("classify", digits_run, folder / "7", "--format", "csv", "-k", 2, "--output", "-")
    assert r.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["path"] for row in rows] == [str(folder / "7" / f"{i}.png") for i in range(3)]
    assert all(row["label"] == "7" and row["correct"] in ("true", "false") for row in rows)
    assert set(rows[0]) == {"path", "label", "correct", "top1", "p1", "top2", "p2", "error", "path_bytes"}
    assert float(rows[0]["p1"]) >= float(rows[0]["p2"])
    r = zoo("classify", digits_run, folder / "7" / "0.png", "--backend", "torch")
    assert r.exit_code == 0
    header, line = r.stdout.splitlines()
    assert header.split() == ["path", "label", "ok", "top-5"] and line.startswith(str(folder / "7" / "0.png"))
    assert "torch" in r.stderr


def test_empty_and_missing_input_are_one_line(digits_run, tmp_path):
    (tmp_path / "empty").mkdir()
    r = zoo("classify", digits_run, tmp_path / "empty")
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0 and "no images in" in r.output
    r = zoo("classify", digits_run, tmp_path / "nowhere")
    assert r.exit_code == 1 and "no such file or folder" in r.output
    r = zoo("classify", tmp_path / "empty", tmp_path)
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0


def test_onnx_classify_does_not_import_torch(digits_run, folder, python_without_torch):
    out = python_without_torch(
        "from zoo.cli import main\n"
        f"sys.argv = ['zoo', 'classify', {str(digits_run / 'model.onnx')!r}, {str(folder / '7')!r}, '-j', '1']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code"
    )
    assert out.count(".png") == 3


def test_the_library_call_writes_what_the_command_writes_and_resumes(digits_run, folder, tmp_path):
    """infer.classify.classify_paths, as a Python user or a Ray actor calls it: the same file and final
    lines as `zoo classify -o`, and a crashed run (its FILE.partial, even one from before `true_label`
    was named so) finished with resume=True."""
    by_cli = tmp_path / "cli.jsonl"
    r = zoo("classify", digits_run, folder, "-k", 3, "-b", 4, "-j", 0, "-o", by_cli)
    assert r.exit_code == 1, r.output
    predictor = infer.load(digits_run)
    out, said = tmp_path / "lib.jsonl", []
    summary = classify_paths(predictor, [folder], out, top_k=3, batch_size=4, workers=0, log=said.append)
    assert out.read_text() == by_cli.read_text() and said == []
    assert (summary.new, summary.carried, summary.tally.images, summary.tally.errors) == (10, 0, 10, 1)
    cli_lines = r.stderr.strip().splitlines()[-2:]
    assert summary.lines()[1] == cli_lines[1] and summary.lines()[0].split(" in ")[0] == "10 images"
    assert summary.lines()[0].split(")", 1)[1] == cli_lines[0].split(")", 1)[1]  # all but the time

    lines = out.read_text().splitlines(keepends=True)
    old = json.loads(lines[0])
    old["label"] = old.pop("true_label")  # a line as files before the rename hold it
    partial = tmp_path / "lib.jsonl.partial"
    partial.write_text(json.dumps(old) + "\n" + "".join(lines[1:4]))
    out.unlink()
    summary = classify_paths(predictor, [folder], out, resume=True, top_k=3, workers=0, log=said.append)
    assert said == [f"carried over 4 results from {partial}; classifying the other 6 images"]
    assert (summary.new, summary.carried) == (6, 4)
    assert out.read_text() == by_cli.read_text() and not partial.exists()
