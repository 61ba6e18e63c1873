"""A progressive JPEG's decoding work grows with its scans (each pass runs over every block), and a tiny
file can carry hundreds of them: the issue's 326 KB file of 806 scans cost 19 s of CPU per decode. The one
opening (zoo.data.preprocess.open_image) counts the scans before anything decodes and refuses past
MAX_JPEG_SCANS, as libjpeg-turbo's scan limit does; zoo classify skips such a file and names it, the server
answers 400 with the reason.

The bombs here are real progressive JPEGs (Pillow's encoder, libjpeg's 10-scan script) whose last scan is
repeated: libjpeg decodes them (it warns of the inconsistent progression and goes on), each repeat one
more full pass."""

import io
import json

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from serving import running

import infer
from serve.app import create_app
from zoo.cli import main
from zoo.data.preprocess import MAX_JPEG_SCANS, ImageError, jpeg_scans, open_image


def progressive(width: int = 64, height: int = 48, **save) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", progressive=True, quality=90, **save)
    return buf.getvalue()


def last_scan(data: bytes) -> tuple[int, int]:
    """Where the last scan (its SOS segment and entropy-coded data) starts and ends: just before EOI."""
    start = data.rindex(b"\xff\xda")
    return start, data.rindex(b"\xff\xd9")


def bomb(scans: int, **kwargs) -> bytes:
    data = progressive(**kwargs)
    start, end = last_scan(data)
    return data[:end] + data[start:end] * (scans - jpeg_scans(io.BytesIO(data))) + data[end:]


def test_a_real_progressive_jpeg_is_counted_and_decodes():
    data = progressive()
    assert Image.open(io.BytesIO(data)).info.get("progressive")
    assert jpeg_scans(io.BytesIO(data)) == 10  # libjpeg's script for a colour image
    assert open_image(data).size == (64, 48)


def test_the_bomb_is_refused_before_it_decodes():
    data = bomb(MAX_JPEG_SCANS + 1)
    Image.open(io.BytesIO(data)).load()  # a decodable file: only the count refuses it
    with pytest.raises(ImageError, match=rf"more than {MAX_JPEG_SCANS} scans"):
        open_image(data)
    with pytest.raises(ImageError, match="scans"):
        open_image(data, load=False)  # the header read alone refuses it: nothing to decode later
    assert open_image(bomb(MAX_JPEG_SCANS)).size == (64, 48)  # at the limit: decodes


def test_markers_inside_other_segments_are_not_scans():
    """An SOS marker's two bytes inside a comment (or an EXIF thumbnail) are data, not scans."""
    data = progressive(comment=b"\xff\xda" * 200)
    assert jpeg_scans(io.BytesIO(data)) == 10
    assert open_image(data).size == (64, 48)


def test_counting_leaves_the_file_where_it_was():
    stream = io.BytesIO(progressive())
    stream.seek(5)
    jpeg_scans(stream)
    assert stream.tell() == 5


def test_classify_skips_the_bomb_and_names_it(exported_lenet, tmp_path):
    run = exported_lenet("digits", class_names=[str(i) for i in range(10)])
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "bomb.jpg").write_bytes(bomb(MAX_JPEG_SCANS * 4))
    (folder / "fine.jpg").write_bytes(progressive())
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["classify", str(run / "model.onnx"), str(folder), "-o", str(out)])
    assert result.exit_code == 1, result.output  # a file failed; the run went on
    assert "1 unreadable" in result.output
    rows = {json.loads(line)["path"].rsplit("/", 1)[1]: json.loads(line) for line in out.read_text().splitlines()}
    assert "top_k" in rows["fine.jpg"] and "top_k" not in rows["bomb.jpg"]
    assert "bomb.jpg" in rows["bomb.jpg"]["error"] and f"more than {MAX_JPEG_SCANS} scans" in rows["bomb.jpg"]["error"]


def test_the_server_answers_400_with_the_reason(served_lenet):
    predictor = infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)
    with running(create_app(predictor)) as url:
        r = httpx.post(url + "/predict", content=bomb(MAX_JPEG_SCANS * 4), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 400
        assert "scans" in r.json()["error"] and "\n" not in r.json()["error"]
        r = httpx.post(url + "/predict", content=progressive(), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 200, r.text
