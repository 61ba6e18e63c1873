"""The core's contracts that classify, the datasets and the server share: one walker (zoo.data.walk)
and one answer (zoo.answer)."""

import os

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from zoo import answer
from zoo.data.datasets import scan_folder
from zoo.data.walk import OUT_OF_TREE, PathError, collect, walk


def test_training_data_and_classify_read_a_folder_the_same_way(tmp_path):
    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    for folder in (root / "a" / ".cache", root / "b", elsewhere):
        folder.mkdir(parents=True)
    for path in (root / "a" / "x.png", root / "a" / "y.jpg", root / "a" / ".cache" / "h.png", root / "b" / "x.png"):
        Image.new("L", (8, 8)).save(path)
    Image.new("L", (8, 8)).save(elsewhere / "z.png")
    (root / "a" / "notes.txt").write_text("x")
    os.mkfifo(root / "b" / "pipe.png")
    (root / "b" / "more").symlink_to(elsewhere)  # out of the folder given: not followed by default
    (root / "b" / "again").symlink_to(root / "a")  # inside it: followed
    (root / "b" / "self").symlink_to(".")  # a loop

    ignored = []
    names, split = scan_folder(root, ignored=ignored)
    files, skipped = collect([root])
    assert names == ["a", "b"] and split.files == [str(f) for f in files]
    assert split.files == [str(root / p) for p in ("a/x.png", "a/y.jpg", "b/again/x.png", "b/again/y.jpg", "b/x.png")]
    assert list(split.labels) == [0, 0, 1, 1, 1]
    assert [why for _, why in skipped] == [
        "no image extension",
        "no image extension",
        OUT_OF_TREE,
        "not a regular file (a FIFO)",
        "symbolic link loop",
    ]
    assert ignored[0].startswith(f"{root / 'a' / 'notes.txt'}: not an image kind (png, ")
    assert ignored[2:] == [
        f"{root / 'b' / 'more'}: {OUT_OF_TREE}",
        f"{root / 'b' / 'pipe.png'}: not a regular file (a FIFO)",
        f"{root / 'b' / 'self'}: symbolic link loop",
    ]


def test_the_walk_is_lazy(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "a" / "x.png")
    entries = walk([tmp_path / "a", tmp_path / "missing"])
    assert next(entries) == (tmp_path / "a" / "x.png", None)  # given before the missing path is reached
    with pytest.raises(PathError, match="missing: no such file or folder"):
        next(entries)


def test_one_model_of_the_answer_holds_what_the_producers_write_and_nothing_else():
    logits = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], np.float32)
    got = answer.answers(logits, ["cat", "dog", "fox"])
    assert [a["top_k"] for a in got] == answer.top_k(logits, ["cat", "dog", "fox"], answer.DEFAULT_TOP_K)
    for a in got:
        assert answer.ImageAnswer.model_validate(a, strict=True).model_dump() == a
    line = {"top_k": got[0]["top_k"], "true_label": "dog"}  # a classify line's other keys are not the answer's
    with pytest.raises(ValidationError, match="true_label"):
        answer.ImageAnswer.model_validate(line, strict=True)
    without_index = {"top_k": [{"label": "dog", "probability": 0.5}]}  # as a CSV row reads back
    with pytest.raises(ValidationError, match="index"):
        answer.ImageAnswer.model_validate(without_index, strict=True)
    assert answer.read_top(without_index) == without_index["top_k"]
