"""Limits of one request on a real server (127.0.0.1, random port) running a real LeNet ONNX model: images
per request (--max-images, 413 before anything is decoded), large requests run in slices of the batch
size, and no answer ever holds a bare NaN (non-finite FP32 input: 400; a model that computes NaN or
infinity from finite input: 500, the same on /predict and v2, always valid JSON)."""

import json
import re
import struct
import time

import httpx
import numpy as np
import pytest
from serving import Output, running, zoo_serve
from tolerances import assert_logits_close

import infer
from serve.app import create_app
from zoo.data.preprocess import preprocess

MAX_IMAGES = 10
BATCH = 4
HEADER = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def predictor(served_lenet):
    return infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)


@pytest.fixture(scope="module")
def server(predictor):
    with running(create_app(predictor, max_batch_size=BATCH, max_delay_ms=2, max_images=MAX_IMAGES)) as url:
        yield url


def v2_url(server, predictor) -> str:
    return f"{server}/v2/models/{predictor.name}/infer"


def binary_bytes(elements: list[bytes], shape: list[int] | None = None) -> dict:
    """httpx.post kwargs: a v2 request of BYTES elements in the binary tensor extension."""
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": shape or [len(elements)],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return {"content": head + raw, "headers": {HEADER: str(len(head))}}


def json_fp32(x: np.ndarray) -> bytes:
    """A v2 request of FP32 data in JSON, written as Python writes NaN and infinity (bare NaN, Infinity)."""
    return json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    ).encode()


def strict_json(text: str):
    """JSON as a strict parser reads it: bare NaN, Infinity and -Infinity are not JSON."""

    def refuse(constant):
        raise ValueError(f"not JSON: bare {constant}")

    return json.loads(text, parse_constant=refuse)


def batch_sizes(server) -> dict[str, float]:
    """The zoo_batch_size histogram's cumulative bucket counts, by upper bound."""
    text = httpx.get(f"{server}/metrics").text
    return dict(re.findall(r'^zoo_batch_size_bucket\{le="([^"]+)"\} (\S+)$', text, re.MULTILINE))


def test_v2_bytes_over_the_cap_is_refused_before_anything_is_decoded(server, predictor):
    junk = [b"not an image"] * (MAX_IMAGES + 1)  # decoding any of them would answer 400 "not an image"
    r = httpx.post(v2_url(server, predictor), **binary_bytes(junk))
    assert r.status_code == 413, r.text
    assert "11 images" in r.json()["error"] and "--max-images" in r.json()["error"]

    as_json = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [MAX_IMAGES + 1],
                "data": ["***not base64***"] * (MAX_IMAGES + 1),
            }
        ]
    }
    r = httpx.post(v2_url(server, predictor), json=as_json)
    assert r.status_code == 413, r.text


def test_v2_bytes_holding_more_elements_than_its_shape_says_is_refused(server, predictor):
    r = httpx.post(v2_url(server, predictor), **binary_bytes([b""] * 500, shape=[1]))
    assert r.status_code == 400, r.text
    assert "more than" in r.json()["error"]


def test_half_a_million_empty_elements_are_refused(server, predictor):
    """The attack of issue 12: 500,000 empty BYTES elements (2 MB), binary and JSON."""
    r = httpx.post(v2_url(server, predictor), **binary_bytes([b""] * 500_000))
    assert r.status_code == 413, r.text
    as_json = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [500_000], "data": [""] * 500_000}]}
    r = httpx.post(v2_url(server, predictor), json=as_json)
    assert r.status_code == 413, r.text
    assert httpx.get(f"{server}/health").status_code == 200


def test_v2_fp32_over_the_cap_is_refused(server, predictor):
    x = np.zeros((MAX_IMAGES + 1, 1, 28, 28), np.float32)
    r = httpx.post(v2_url(server, predictor), content=json_fp32(x))
    assert r.status_code == 413, r.text


def test_multipart_over_the_cap_is_refused(server, served_lenet):
    digit = served_lenet.digits[0][0]
    files = [("file", (f"{i}.png", digit, "image/png")) for i in range(MAX_IMAGES + 1)]
    r = httpx.post(f"{server}/predict", files=files)
    assert r.status_code == 413, r.text
    assert "--max-images" in r.json()["error"]


def test_a_request_at_the_cap_runs_in_batches_and_answers_as_one_at_a_time(server, predictor, served_lenet):
    digits = [d for d, _ in served_lenet.digits[:MAX_IMAGES]]
    want = predictor.predict(np.stack([preprocess(d, predictor.card) for d in digits]))
    before = batch_sizes(server)

    r = httpx.post(v2_url(server, predictor), **binary_bytes(digits))
    assert r.status_code == 200, r.text
    logits = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(MAX_IMAGES, 10)
    one_at_a_time = [
        np.array(httpx.post(v2_url(server, predictor), **binary_bytes([d])).json()["outputs"][0]["data"], np.float32)
        for d in digits
    ]
    # BATCH rows at a time vs one at a time vs all at once, exact JSON both ways: tolerances.py
    assert_logits_close(logits, np.stack(one_at_a_time))
    assert_logits_close(logits, want)

    x = np.stack([preprocess(d, predictor.card) for d in digits])
    r = httpx.post(v2_url(server, predictor), content=json_fp32(x))
    assert r.status_code == 200, r.text
    assert_logits_close(np.array(r.json()["outputs"][0]["data"]).reshape(MAX_IMAGES, 10), want)

    files = [("file", (f"{i}.png", d, "image/png")) for i, d in enumerate(digits)]
    r = httpx.post(f"{server}/predict", files=files, params={"top_k": 1})
    assert r.status_code == 200, r.text
    assert [p["top_k"][0]["index"] for p in r.json()["predictions"]] == list(want.argmax(1))

    after = batch_sizes(server)  # no batch of the model held more than BATCH images (counts: exact floats)
    assert float(after[str(float(BATCH))]) - float(before[str(float(BATCH))]) == float(after["+Inf"]) - float(
        before["+Inf"]
    )


def test_non_finite_fp32_input_is_refused(server, predictor):
    for bad in (np.nan, np.inf, -np.inf):
        x = np.zeros((1, 1, 28, 28), np.float32)
        x[0, 0, 3, 4] = bad
        r = httpx.post(v2_url(server, predictor), content=json_fp32(x))
        assert r.status_code == 400, r.text
        assert "NaN or infinity" in r.json()["error"]
        head = json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": [1, 1, 28, 28],
                        "parameters": {"binary_data_size": x.nbytes},
                    }
                ]
            }
        ).encode()
        r = httpx.post(
            v2_url(server, predictor), content=head + x.astype("<f4").tobytes(), headers={HEADER: str(len(head))}
        )
        assert r.status_code == 400, r.text
        assert "NaN or infinity" in r.json()["error"]


@pytest.fixture(scope="module")
def overflowing(tmp_path_factory):
    """A real ONNX model (with a LeNet card) whose output overflows to infinity and NaN for finite input:
    logits = flatten(x) @ W with entries of 1e38 of both signs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from zoo.card import ONNX_METADATA_KEY, ModelCard

    w = np.full((784, 10), 1e38, np.float32)
    w[::2, 5:] = -1e38
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "overflow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.append(
        onnx.StringStringEntryProto(key=ONNX_METADATA_KEY, value=ModelCard.for_model("lenet").to_json())
    )
    path = tmp_path_factory.mktemp("overflow") / "overflow.onnx"
    onnx.save(model, path)
    return infer.load(path, backend="onnxruntime", threads=1)


def test_non_finite_model_output_is_a_valid_json_error_on_every_route(overflowing, served_lenet):
    digit = served_lenet.digits[0][0]
    x = preprocess(digit, overflowing.card)[None]
    assert np.isfinite(x).all() and not np.isfinite(overflowing.predict(x)).all()
    with running(create_app(overflowing, max_delay_ms=2)) as url:
        infer_url = f"{url}/v2/models/{overflowing.name}/infer"
        answers = [
            httpx.post(f"{url}/predict", content=digit, headers={"Content-Type": "image/png"}),
            httpx.post(f"{url}/predict", files=[("file", ("a.png", digit, "image/png"))] * 2),
            httpx.post(infer_url, content=json_fp32(x)),
            httpx.post(infer_url, **binary_bytes([digit])),
        ]
    for r in answers:
        assert "not finite" in strict_json(r.text)["error"]
    # from images: the model's fault, the same 500 on /predict and v2; from FP32 values the client chose:
    # that input is what the model cannot answer (422), never a 5xx a client can cause at will
    assert [r.status_code for r in answers] == [500, 500, 422, 500], [r.text for r in answers]
    assert len({answers[i].text for i in (0, 1, 3)}) == 1


def test_zoo_serve_takes_max_images(served_lenet):
    """The flag reaches the app of a real `zoo serve` process."""
    import os
    import signal

    digit = served_lenet.digits[0][0]
    proc = zoo_serve(served_lenet.onnx, "--port", 0, "--max-images", 2, "--threads", 1, "--log-level", "warning")
    out = Output(proc)
    try:
        url = out.wait_for(r"on (http://127\.0\.0\.1:\d+)").group(1)
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health").status_code != 200:  # 503 while warming up
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        for count, status in ((2, 200), (3, 413)):
            files = [("file", (f"{i}.png", digit, "image/png")) for i in range(count)]
            r = httpx.post(f"{url}/predict", files=files)
            assert r.status_code == status, r.text
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
