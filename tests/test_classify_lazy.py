"""`zoo classify` consumes its folder walk lazily (issue 20, defect 2): results stream before the walk
ends, and what it holds does not grow with the tree.

zoo.data.walk's `walk` is wrapped to count the entries it has given (the real walk of a real folder of
200 small PNGs, classified by a real exported LeNet); the counts taken when the model first runs and
when the first result is written must stay within one batch and the decoding's read-ahead. Counts, not
times: nothing here depends on the machine's speed.
"""

import io
import json

import numpy as np
import pytest
from PIL import Image

import infer
from infer.classify import classify_paths, plan
from infer.decoding import decoded_batches
from zoo.data import walk as walker
from zoo.data.walk import PathError, collect, describe_skipped

N = 200  # images in the folder
TEXTS = len(range(0, N, 7))  # text files among them: one beside every 7th image
BATCH = 8


@pytest.fixture
def digits_run(exported_lenet):
    return exported_lenet("digits", class_names=[str(i) for i in range(10)])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """N small PNGs in class folders 0..9, and TEXTS text files among them (skipped, one reason)."""
    root = tmp_path_factory.mktemp("lazy") / "digits"
    rng = np.random.default_rng(0)
    for i in range(N):
        sub = root / str(i % 10)
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(sub / f"{i:03d}.png")
        if i % 7 == 0:
            (sub / f"{i:03d}.txt").write_text("not an image")
    return root


@pytest.fixture
def pulled(monkeypatch):
    """[how many entries zoo.data.walk.walk has given so far], counting as the walk goes."""
    count = [0]
    real = walker.walk

    def counting(*args, **kwargs):
        for entry in real(*args, **kwargs):
            count[0] += 1
            yield entry

    monkeypatch.setattr(walker, "walk", counting)
    return count


class Output(io.StringIO):
    """The run's stream, noting how far the walk had gone when the first result was written."""

    def __init__(self, pulled):
        super().__init__()
        self.pulled, self.at_first_write = pulled, None

    def write(self, text):
        if self.at_first_write is None:
            self.at_first_write = self.pulled[0]
        return super().write(text)


@pytest.mark.parametrize("workers", [0, 1])
def test_results_stream_before_the_walk_ends(digits_run, folder, pulled, monkeypatch, workers):
    predictor = infer.load(digits_run, "onnxruntime")
    at_predict, predict = [], predictor.predict

    def counted_predict(x):
        at_predict.append(pulled[0])
        return predict(x)

    monkeypatch.setattr(predictor, "predict", counted_predict)
    out = Output(pulled)
    summary = classify_paths(predictor, [folder], None, fmt="jsonl", stream=out, batch_size=BATCH, workers=workers)
    total = pulled[0]
    assert total == N + TEXTS and summary.tally.images == N  # the whole walk, every image once
    assert [json.loads(line)["path"] for line in out.getvalue().splitlines()] == [str(p) for p in collect([folder])[0]]
    # one batch, plus the decoding pool's read-ahead (2 batches per worker, and the next one submitted),
    # plus the text files met on the way (1 in 7 images)
    bound = (2 * workers + 1) * BATCH * 8 // 7 + 1
    assert at_predict[0] <= bound < total // 4, (at_predict[0], bound)
    assert out.at_first_write <= bound, (out.at_first_write, bound)
    assert len(at_predict) == N // BATCH and at_predict[-1] == total


def test_plan_walks_only_to_the_first_image_and_checks_every_named_path(folder, pulled, tmp_path):
    job = plan([folder], tmp_path / "out.jsonl")
    assert pulled[0] == 1 and next(job.images) == folder / "0" / "000.png"  # the rest waits for `run`
    with pytest.raises(PathError, match="missing: no such file or folder"):
        plan([folder, tmp_path / "missing"])  # refused before a model loads, not when the walk gets there
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(PathError, match=r"no images in .*; 1 file skipped \(.*a.txt: no image extension\)"):
        plan([tmp_path / "empty"])


def test_skipped_entries_are_counted_not_kept(digits_run, folder, tmp_path):
    """The final line names the first of each reason and counts the others, as it did from a list, and
    the run holds one path per reason, however many entries were skipped."""
    job = plan([folder], tmp_path / "out.jsonl")
    summary = infer.classify.run(job, infer.load(digits_run, "onnxruntime"), batch_size=BATCH, workers=0)
    expected = describe_skipped(collect([folder])[1])
    assert expected.startswith(f"{TEXTS} files skipped (") and f"(+{TEXTS - 1} more)" in expected
    assert describe_skipped(summary.skipped) == expected and summary.lines()[0].endswith(f"; {expected}")
    assert len(summary.skipped) == TEXTS and list(summary.skipped.first.values()) == [folder / "0" / "000.txt"]


@pytest.mark.parametrize("workers", [0, 1])
def test_decoding_takes_an_iterator_with_bounded_read_ahead(digits_run, folder, workers):
    card = infer.load(digits_run, "onnxruntime").card
    files, given = collect([folder])[0], [0]

    def lazily():
        for f in files:
            given[0] += 1
            yield f

    batches = decoded_batches(lazily(), card, batch_size=4, workers=workers, prefetch=2)
    try:
        chunk, (x, ok, errors) = next(batches)
        assert chunk == files[:4] and len(x) == 4 and not errors
        assert given[0] <= (3 if workers else 1) * 4  # prefetch + 1 batches with a pool, else one
        assert sum(len(c) for c, _ in batches) == N - 4 and given[0] == N
    finally:
        batches.close()
