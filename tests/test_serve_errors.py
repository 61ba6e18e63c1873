"""Bad input gets a 4xx JSON error `{"error": ...}`, never a 500 and never a dead server: every case of
the issue (and a few more) against a real server, then a good request that must still succeed."""

import base64
import gzip
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image
from serving import jpeg, running

import infer
from serve.app import create_app
from serve.protocol import ErrorResponse, PredictResponse

MAX_BODY_MB = 1
MAX_PIXELS = 1_000_000


def png_of(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def bad_requests(name: str, digit: bytes):
    """(description, expected status, httpx.request kwargs) for each kind of bad input."""
    image = {"Content-Type": "image/png"}
    photo = jpeg(np.asarray(Image.open(io.BytesIO(digit)).resize((280, 280))))
    bomb = png_of(np.zeros((5000, 5000), np.uint8))  # 25 megapixels in a few kilobytes
    assert len(bomb) < MAX_BODY_MB * 2**20
    infer_url = f"/v2/models/{name}/infer"
    x = np.zeros((1, 1, 28, 28), np.float32)

    def v2(shape=(1, 1, 28, 28), datatype="FP32", data=None, **more):
        inp = {
            "name": "input",
            "shape": list(shape),
            "datatype": datatype,
            "data": x.ravel().tolist() if data is None else data,
        }
        return dict(method="POST", url=infer_url, json={"inputs": [inp], **more})

    def chunked(total):
        def body():
            for _ in range(total // 65536):
                yield b"\0" * 65536

        return body()

    b64 = base64.b64encode(digit).decode()
    yield "empty body", 400, dict(method="POST", url="/predict", content=b"", headers=image)
    yield "not an image", 400, dict(method="POST", url="/predict", content=b"GIF89a but not really", headers=image)
    yield "truncated JPEG", 400, dict(method="POST", url="/predict", content=photo[: len(photo) // 2], headers=image)
    yield "decompression bomb", 400, dict(method="POST", url="/predict", content=bomb, headers=image)
    yield (
        "body over the limit",
        413,
        dict(method="POST", url="/predict", content=b"\0" * (MAX_BODY_MB * 2**20 + 1), headers=image),
    )
    yield (
        "chunked body over the limit",
        413,
        dict(method="POST", url="/predict", content=chunked(2 * MAX_BODY_MB * 2**20), headers=image),
    )
    yield (
        "chunked v2 body over the limit",
        413,
        dict(method="POST", url=infer_url, content=chunked(2 * MAX_BODY_MB * 2**20)),
    )
    yield (
        "wrong content type",
        415,
        dict(method="POST", url="/predict", content=digit, headers={"Content-Type": "text/plain"}),
    )
    yield "no content type", 415, dict(method="POST", url="/predict", content=digit)
    yield "v2 with an image content type", 415, dict(method="POST", url=infer_url, content=digit, headers=image)
    yield (
        "multipart without a file field",
        400,
        dict(method="POST", url="/predict", data={"other": "1"}, files={"x": ("a.png", digit, "image/png")}),
    )
    yield (
        "multipart with an empty file",
        400,
        dict(method="POST", url="/predict", files={"file": ("a.png", b"", "image/png")}),
    )
    yield "top_k not a number", 422, dict(method="POST", url="/predict?top_k=many", content=digit, headers=image)
    yield "top_k zero", 422, dict(method="POST", url="/predict?top_k=0", content=digit, headers=image)
    yield "v2 wrong shape", 400, v2(shape=(1, 3, 28, 28), data=[0.0] * 3 * 784)
    yield "v2 missing batch axis", 400, v2(shape=(1, 28, 28))
    yield "v2 negative dimension", 400, v2(shape=(-1, 1, 28, 28))
    yield "v2 wrong datatype", 400, v2(datatype="INT32")
    yield "v2 wrong element count", 400, v2(data=[0.0] * 783)
    yield "v2 ragged nested data", 400, v2(data=[[0.0] * 784, [0.0]])
    yield "v2 strings as FP32", 400, v2(data=["0"] * 784)
    yield "v2 BYTES not base64", 400, v2(shape=(1,), datatype="BYTES", data=["***"])
    yield "v2 BYTES not an image", 400, v2(shape=(1,), datatype="BYTES", data=[base64.b64encode(b"hi").decode()])
    yield "v2 BYTES count", 400, v2(shape=(2,), datatype="BYTES", data=[b64])
    yield (
        "v2 two inputs",
        400,
        dict(method="POST", url=infer_url, json={"inputs": [v2()["json"]["inputs"][0], v2()["json"]["inputs"][0]]}),
    )
    yield "v2 unknown output", 400, v2(outputs=[{"name": "probabilities"}])
    yield "v2 no inputs key", 400, dict(method="POST", url=infer_url, json={"input": []})
    yield (
        "v2 malformed JSON",
        400,
        dict(method="POST", url=infer_url, content=b'{"inputs": [', headers={"Content-Type": "application/json"}),
    )
    yield "v2 empty body", 400, dict(method="POST", url=infer_url, content=b"")
    head = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "parameters": {"binary_data_size": 3136}}
            ]
        }
    ).encode()
    yield (
        "v2 binary shorter than said",
        400,
        dict(
            method="POST",
            url=infer_url,
            content=head + b"\0" * 100,
            headers={"Inference-Header-Content-Length": str(len(head))},
        ),
    )
    yield (
        "v2 header length past the body",
        400,
        dict(method="POST", url=infer_url, content=head, headers={"Inference-Header-Content-Length": "99999"}),
    )
    yield (
        "v2 header length not a number",
        400,
        dict(method="POST", url=infer_url, content=head, headers={"Inference-Header-Content-Length": "ten"}),
    )
    yield (
        "v2 gzip that is not",
        400,
        dict(method="POST", url=infer_url, content=b"plain", headers={"Content-Encoding": "gzip"}),
    )
    yield (
        "v2 gzip bomb",
        413,
        dict(
            method="POST", url=infer_url, content=gzip.compress(b" " * 3 * 2**20), headers={"Content-Encoding": "gzip"}
        ),
    )
    yield (
        "v2 unknown encoding",
        415,
        dict(method="POST", url=infer_url, content=b"x", headers={"Content-Encoding": "br"}),
    )
    yield "unknown model", 404, v2() | {"url": "/v2/models/no-such-model/infer"}
    yield "unknown model metadata", 404, dict(method="GET", url="/v2/models/no-such-model")
    yield "unknown path", 404, dict(method="GET", url="/no/such/path")
    yield "wrong method", 405, dict(method="GET", url="/predict")


def test_every_bad_input_is_a_4xx_json_error_and_the_server_carries_on(served_lenet):
    predictor = infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)
    digit, label = served_lenet.digits[0]
    app = create_app(predictor, max_body_mb=MAX_BODY_MB, max_image_pixels=MAX_PIXELS)
    with running(app) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            cases = list(bad_requests(predictor.name, digit))
            for what, status, request in cases:
                try:
                    r = client.request(**request)
                except httpx.TransportError as e:  # a dropped connection is a failure too
                    pytest.fail(f"{what}: connection failed ({e!r})")
                assert r.status_code == status, f"{what}: {r.status_code} {r.text[:300]}"
                assert ErrorResponse.model_validate_json(r.content, strict=True).error, what

            r = client.post("/predict", content=digit, headers={"Content-Type": "image/png"})
            assert r.status_code == 200
            assert PredictResponse.model_validate_json(r.content, strict=True).predictions[0].top_k[0].label
            metrics = client.get("/metrics").text
    assert 'status="5' not in metrics  # no 5xx, counted by the server itself
    assert metrics.count("zoo_request_errors_total{") >= 10


def test_a_lone_surrogate_in_json_is_named_as_such():
    """JSON text must be Unicode: an escaped lone UTF-16 surrogate is refused saying so (pydantic's own
    words were "unexpected end of hex escape", which points at nothing the client wrote)."""
    from serve.protocol import WireError, decode_infer_request

    body = b'{"inputs": [{"name": "input", "shape": [1, 1, 1, 1], "datatype": "FP32", "data": [1]}],'
    body += b' "parameters": {"note": "\\ud800"}}'
    with pytest.raises(WireError, match=r"malformed JSON: a lone UTF-16 surrogate \\ud800 at line 1 column \d+"):
        decode_infer_request(body, None, [1, 1, 1])
    paired = body.replace(b"\\ud800", b"\\ud83d\\ude00")  # a pair (an emoji) is fine
    assert decode_infer_request(paired, None, [1, 1, 1]).tensor.shape == (1, 1, 1, 1)
