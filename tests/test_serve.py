"""`zoo serve`'s app on a real uvicorn server (127.0.0.1, random port) running a real LeNet ONNX model:
/predict, the KServe v2 protocol through the official tritonclient, batching of concurrent requests,
health, models, metrics, docs, the page, the API key."""

import asyncio
import base64
import io
import json
import os
import re

import httpx
import numpy as np
import pytest
from PIL import Image
from serving import jpeg, running
from tolerances import assert_logits_close, probability_atol

import infer
from serve.app import create_app
from serve.protocol import HEADER_LENGTH, InferResponse, PredictResponse
from zoo.data.preprocess import preprocess


@pytest.fixture(scope="module")
def predictor(served_lenet):
    return infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)


@pytest.fixture(scope="module")
def server(predictor):
    with running(create_app(predictor, max_delay_ms=2)) as url:
        yield url


def expected(predictor, images: list[bytes]) -> np.ndarray:
    """The model's logits for these encoded images, in process: what the server must answer."""
    return predictor.predict(np.stack([preprocess(b, predictor.card) for b in images]))


def predict_answer(r: httpx.Response) -> dict:
    """A real /predict answer, validated against the one model of the answer (zoo.answer.ImageAnswer in
    protocol.PredictResponse), strictly: no key more or less, no value of another type."""
    assert r.status_code == 200, r.text
    PredictResponse.model_validate_json(r.content, strict=True)
    return r.json()


def infer_answer(r: httpx.Response) -> dict:
    """A real v2 inference answer in JSON (or its JSON header, where the tensor follows in binary),
    validated strictly against protocol.InferResponse."""
    assert r.status_code == 200, r.text
    head = r.content[: int(r.headers.get(HEADER_LENGTH, len(r.content)))]
    InferResponse.model_validate_json(head, strict=True)
    return json.loads(head)


def softmax(z):
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def test_predict_raw_body_and_multipart(server, predictor, served_lenet):
    digits = served_lenet.digits[:3]
    logits = expected(predictor, [d for d, _ in digits])
    want = softmax(logits.astype(np.float64))
    r = httpx.post(f"{server}/predict", content=digits[0][0], headers={"Content-Type": "image/png"})
    answer = predict_answer(r)
    assert answer["model"] == predictor.name
    assert len(answer["predictions"]) == 1
    top = answer["predictions"][0]["top_k"]
    assert len(top) == 5 and [p["index"] for p in top] == list(np.argsort(-want[0])[:5])
    assert top[0]["label"] == predictor.card.class_names[top[0]["index"]]
    # the server's batch vs ours (the same bits in ONNX Runtime here, not promised), 6 decimals: tolerances.py
    assert np.allclose(
        [p["probability"] for p in top], np.sort(want[0])[::-1][:5], atol=probability_atol(logits), rtol=0
    )

    files = [("file", (f"{i}.png", d, "image/png")) for i, (d, _) in enumerate(digits)]
    r = httpx.post(f"{server}/predict", params={"top_k": 2}, files=files)
    per_image = predict_answer(r)["predictions"]
    assert len(per_image) == 3 and all(len(p["top_k"]) == 2 for p in per_image)
    assert [p["top_k"][0]["index"] for p in per_image] == list(want.argmax(1))


def test_concurrent_requests_each_get_their_own_answer(server, predictor, served_lenet):
    """32 different digits at once, half through /predict and half through v2 FP32: every caller gets
    the answer for its own image, however the batcher grouped them."""
    digits = [d for d, _ in served_lenet.digits[:32]]
    want = expected(predictor, digits)
    tensors = [preprocess(d, predictor.card)[None] for d in digits]

    async def one(client, i):
        if i % 2:
            r = await client.post(
                "/predict", content=digits[i], headers={"Content-Type": "image/png"}, params={"top_k": 10}
            )
            scores = {p["index"]: p["probability"] for p in predict_answer(r)["predictions"][0]["top_k"]}
            return np.array([scores[k] for k in range(10)])
        body = {
            "inputs": [
                {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": tensors[i].ravel().tolist()}
            ]
        }
        r = await client.post(f"/v2/models/{predictor.name}/infer", json=body)
        return softmax(np.array(infer_answer(r)["outputs"][0]["data"], np.float64))

    async def all_at_once():
        async with httpx.AsyncClient(base_url=server, limits=httpx.Limits(max_connections=64)) as client:
            return await asyncio.gather(*(one(client, i) for i in range(32)))

    got = np.stack(asyncio.run(all_at_once()))
    # the batcher's batches vs one call, and 6 decimals: probability_atol; another image's answer is 0.99 off
    assert np.allclose(got, softmax(want.astype(np.float64)), atol=probability_atol(want), rtol=0)
    assert len(set(want.argmax(1))) == 10  # the digits really differ, so a mix-up would show


def test_batches_form_under_concurrency(predictor, served_lenet):
    """With a long enough delay, concurrent requests run in fewer batches than there are requests."""
    digits = [d for d, _ in served_lenet.digits[:16]]
    with running(create_app(predictor, max_delay_ms=300, max_batch_size=32)) as url:

        async def fire():
            async with httpx.AsyncClient(base_url=url) as client:
                return await asyncio.gather(
                    *(client.post("/predict", content=d, headers={"Content-Type": "image/png"}) for d in digits)
                )

        assert all(r.status_code == 200 for r in asyncio.run(fire()))
        text = httpx.get(f"{url}/metrics").text
    batches = float(re.search(r"^zoo_batch_size_count (\S+)$", text, re.M).group(1))
    rows = float(re.search(r"^zoo_batch_size_sum (\S+)$", text, re.M).group(1))
    assert rows == 16 and batches < 16


def test_tritonclient_fp32_and_bytes(server, predictor, served_lenet):
    """The official KServe v2 / Triton HTTP client: health, metadata, FP32 and BYTES, binary and JSON."""
    http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(server.removeprefix("http://"))
    name = predictor.name
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
    assert not client.is_model_ready("no-such-model")
    assert client.get_server_metadata()["name"] == "cnnzoo"
    meta = client.get_model_metadata(name)
    assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
    assert meta["outputs"][0] == {"name": "logits", "datatype": "FP32", "shape": [-1, 10]}

    digits = [d for d, _ in served_lenet.digits[:5]]
    want = expected(predictor, digits)
    x = np.stack([preprocess(d, predictor.card) for d in digits])
    for binary in (True, False):
        inp = http.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        outputs = None if binary else [http.InferRequestedOutput("logits", binary_data=False)]
        got = client.infer(name, [inp], outputs=outputs).as_numpy("logits")
        assert got.shape == (5, 10)
        assert_logits_close(got, want)  # the server's batch vs ours; FP32 travels exactly, binary or JSON

    inp = http.InferInput("image", [5], "BYTES")
    inp.set_data_from_numpy(np.array(digits, dtype=np.object_))  # binary, as the client sends by default
    assert_logits_close(client.infer(name, [inp]).as_numpy("logits"), want)
    assert_logits_close(client.infer(name, [inp], request_compression_algorithm="gzip").as_numpy("logits"), want)
    with pytest.raises(Exception, match="unknown model"):
        client.infer("no-such-model", [inp])


def test_v2_bytes_as_base64_json_and_nested_fp32(server, predictor, served_lenet):
    digit = served_lenet.digits[3][0]
    photo = jpeg(np.asarray(Image.open(io.BytesIO(served_lenet.digits[4][0]))))  # another digit, as JPEG
    want = expected(predictor, [digit, photo])
    body = {
        "id": "req-7",
        "inputs": [
            {
                "name": "image",
                "shape": [2],
                "datatype": "BYTES",
                "data": [base64.b64encode(b).decode() for b in (digit, photo)],
            }
        ],
    }
    r = httpx.post(f"{server}/v2/models/{predictor.name}/infer", json=body)
    out = infer_answer(r)
    assert out["id"] == "req-7" and out["model_name"] == predictor.name
    assert out["outputs"][0]["shape"] == [2, 10]
    # JSON carries a float32 exactly (Python's repr of its float64 value); the batches differ: tolerances.py
    assert_logits_close(np.array(out["outputs"][0]["data"]).reshape(2, 10), want)

    x = preprocess(digit, predictor.card)[None]
    body = {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": x.tolist()}]}
    r = httpx.post(f"{server}/v2/models/{predictor.name}/infer", json=body)
    assert_logits_close(np.array(infer_answer(r)["outputs"][0]["data"]), want[0])
    body["parameters"] = {"binary_data_output": True}  # the tensor after the JSON header
    r = httpx.post(f"{server}/v2/models/{predictor.name}/infer", json=body)
    (out,) = infer_answer(r)["outputs"]
    assert out["shape"] == [1, 10] and "data" not in out and out["parameters"] == {"binary_data_size": 40}
    tail = r.content[int(r.headers[HEADER_LENGTH]) :]
    assert_logits_close(np.frombuffer(tail, "<f4"), want[0])


def test_health_models_metrics_docs_page(server, predictor):
    assert httpx.get(f"{server}/health").json() == {"status": "ready", "model": predictor.name, "pid": os.getpid()}
    assert httpx.get(f"{server}/v2/health/live").status_code == 200
    models = httpx.get(f"{server}/models").json()["models"]
    assert models[0]["name"] == predictor.name and models[0]["backend"] == "onnxruntime"
    assert models[0]["precision"] == "fp32" and models[0]["selection"] == predictor.selection
    assert models[0]["card"] == predictor.card.to_dict()
    text = httpx.get(f"{server}/metrics").text
    for metric in (
        "zoo_requests_total",
        "zoo_request_errors_total",
        "zoo_request_duration_seconds_bucket",
        "zoo_batch_size_bucket",
        "zoo_queue_depth",
        "zoo_warmup_seconds",
    ):
        assert metric in text
    warmup = float(re.search(r"^zoo_warmup_seconds (\S+)$", text, re.M).group(1))
    assert warmup > 0  # the model was run before /v2/health/ready said 200
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    assert {"/predict", "/v2/models/{model}/infer", "/v2/health/ready", "/metrics"} <= set(paths)
    assert "swagger" in httpx.get(f"{server}/docs").text.lower()
    page = httpx.get(f"{server}/")
    assert page.headers["content-type"].startswith("text/html") and 'id="file"' in page.text


def test_api_key_guards_everything_but_health_and_the_page(predictor, served_lenet):
    digit = served_lenet.digits[0][0]
    key = {"Authorization": "Bearer s3cret"}
    with running(create_app(predictor, api_key="s3cret")) as url:
        for path in ("/health", "/v2/health/live", "/v2/health/ready"):
            assert httpx.get(url + path).status_code == 200
        page = httpx.get(url + "/")  # the page opens without the key (it asks for it) and holds no data
        assert page.status_code == 200 and 'id="key"' in page.text and predictor.name not in page.text
        for path in ("/models", "/metrics", "/v2", f"/v2/models/{predictor.name}", "/docs", "/openapi.json"):
            r = httpx.get(url + path)
            assert r.status_code == 401 and "API key" in r.json()["error"]
            assert httpx.get(url + path, headers=key).status_code == 200
        for scheme in ("bearer", "BEARER", "BeArEr"):  # the scheme's case is free (RFC 7235), the key's not
            assert httpx.get(url + "/models", headers={"Authorization": f"{scheme} s3cret"}).status_code == 200
            assert httpx.get(url + "/models", headers={"Authorization": f"{scheme} S3CRET"}).status_code == 401
        assert httpx.get(url + "/models", headers={"Authorization": "Basic s3cret"}).status_code == 401
        post = dict(content=digit, url=f"{url}/predict")
        assert httpx.post(**post, headers={"Content-Type": "image/png"}).status_code == 401
        assert (
            httpx.post(**post, headers={"Content-Type": "image/png", "Authorization": "Bearer wrong"}).status_code
            == 401
        )
        assert httpx.post(**post, headers={"Content-Type": "image/png", **key}).status_code == 200


def test_metrics_label_unknown_methods_as_other():
    from serve.metrics import Metrics

    m = Metrics("m", "onnxruntime", "cpu")
    m.request("BREW", "unmatched", 405, 0.001)
    m.request("POST", "/predict", 200, 0.001)
    m.request("POST", "/predict", 200, 0.002)
    text = m.render().decode()
    assert 'zoo_requests_total{method="other",route="unmatched",status="405"} 1.0' in text
    assert 'zoo_requests_total{method="POST",route="/predict",status="200"} 2.0' in text
    assert "BREW" not in text


def test_classify_and_predict_give_one_image_the_same_top_k(server, served_lenet, tmp_path):
    """One vocabulary (zoo.answer): a line of `zoo classify -o x.jsonl` and the /predict answer carry
    the same per-image `top_k` (same keys, same values) for the same image."""
    from click.testing import CliRunner

    from zoo.answer import ImageAnswer
    from zoo.cli import main

    digit = served_lenet.digits[0][0]
    (tmp_path / "one.png").write_bytes(digit)
    out = tmp_path / "x.jsonl"
    r = CliRunner().invoke(
        main,
        [
            "classify",
            str(served_lenet.onnx),
            str(tmp_path / "one.png"),
            "--backend",
            "onnxruntime",
            "--top-k",
            "3",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    (line,) = [json.loads(s) for s in out.read_text().splitlines()]
    answer = predict_answer(
        httpx.post(f"{server}/predict?top_k=3", content=digit, headers={"Content-Type": "image/png"})
    )
    (image,) = answer["predictions"]
    assert list(image) == ["top_k"] and len(image["top_k"]) == 3
    assert all(list(t) == ["label", "index", "probability"] for t in image["top_k"])
    assert line["top_k"] == image["top_k"]
    assert ImageAnswer.model_validate({"top_k": line["top_k"]}, strict=True) == ImageAnswer.model_validate(image)
