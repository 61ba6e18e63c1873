"""The wire formats: pydantic models of the KServe v2 / Open Inference Protocol (REST) and of /predict,
and the decoding of a v2 inference request into what the model takes.

KServe v2 in one paragraph (https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol,
Triton's HTTP/REST API): an inference request is a JSON object `{"id"?, "parameters"?, "inputs": [{"name",
"shape", "datatype", "parameters"?, "data"}], "outputs"?: [{"name", "parameters"?}]}`; tensor data is a
flat or nested JSON list in row-major order. The *binary tensor data* extension (what `tritonclient` sends
by default) puts the JSON first and the raw tensors after it in the same body: the header
`Inference-Header-Content-Length` says where the JSON ends, and each input with
`parameters.binary_data_size` takes that many bytes, in order. A BYTES tensor in binary form is each
element as a 4-byte little-endian length and then its bytes; in JSON, each element is a string, which
for the images this server takes is the base64 of the encoded file. Outputs come back as JSON data, or
binary after the JSON when the request asks (`parameters.binary_data_output`, or an output's
`parameters.binary_data`). Errors are `{"error": "..."}`.

This server's model takes one input: either FP32 `[N, C, H, W]` (already preprocessed, as the model
card says) or BYTES `[N]` of encoded images (preprocessed here with zoo.data.preprocess), and answers
the FP32 output `logits` `[N, num_classes]`. Limits: a request of more than `max_images` images (the
shape's N) is TooManyImages (413) before its elements are read; FP32 data must be finite (NaN or infinity:
400); logits that are not finite are NonFiniteOutput, never a bare NaN (500 from images, on v2 and
/predict alike; 422 from FP32 values the client chose).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zoo.answer import ImageAnswer
from zoo.rundir import INPUT_TENSOR, OUTPUT_TENSOR

HEADER_LENGTH = "Inference-Header-Content-Length"
IMAGE_INPUT = "image"  # the BYTES input's name in the model metadata
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan", "torch": "pytorch_torch"}


class WireError(ValueError):
    """A request that does not follow the protocol or does not fit the model: answered 400."""


class TooManyImages(WireError):
    """A request with more images than the server takes in one request (--max-images): answered 413."""

    def __init__(self, count: int | None, limit: int):
        held = f"{count:,}" if count is not None else f"more than {limit:,}"
        super().__init__(
            f"the request holds {held} images; the limit is {limit:,} per request (--max-images): "
            "send them in several requests"
        )


class NonFiniteOutput(ValueError):
    """The model computed NaN or infinity from finite input: answered 500 where the input was images (a
    fault of the model), 422 where it was FP32 values the client chose."""

    def __init__(self):
        super().__init__("the model's output is not finite (NaN or infinity) for this input")


def check_finite(logits: np.ndarray) -> None:
    """NonFiniteOutput unless every logit is finite: no answer ever holds a bare NaN, which is not JSON."""
    if not np.isfinite(logits).all():
        raise NonFiniteOutput()


# ---- KServe v2 -------------------------------------------------------------------------------------


class Parameters(BaseModel):
    model_config = ConfigDict(extra="allow")


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for the batch dimension, which takes any size")


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str] = []
    platform: str
    inputs: list[TensorMetadata] = Field(
        description="The model takes ONE of these per request: FP32 [N, C, H, W] preprocessed, or "
        "BYTES [N] of encoded images (base64 strings in JSON)"
    )
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(None, description="Row-major values, flat or nested; BYTES: base64 strings")


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[float] | None = None


class InferResponse(BaseModel):
    """A v2 inference answer (`encode_infer_response` writes it; the server tests validate real ones)."""

    model_config = ConfigDict(extra="forbid")

    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


class ErrorResponse(BaseModel):
    error: str


# ---- /predict ---------------------------------------------------------------------------------------


class PredictResponse(BaseModel):
    """The /predict answer: one zoo.answer.ImageAnswer per image (`Service.classify` writes it)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="the served model's name")
    predictions: list[ImageAnswer] = Field(description="one per image sent, in order")


class ModelInfo(BaseModel):
    name: str
    backend: str
    precision: str  # the arithmetic the runtime computes in (fp32, bf16, fp16, int8)
    selection: str  # why this runtime and precision (infer.load's line)
    device: str
    card: dict[str, Any]


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


# ---- decoding an inference request -----------------------------------------------------------------


@dataclass
class Decoded:
    """A v2 inference request, checked against the model: exactly one of `tensor` / `images` is set."""

    id: str | None
    tensor: np.ndarray | None  # float32 [N, C, H, W]
    images: list[bytes] | None  # encoded image files
    binary_output: bool  # answer with the binary tensor extension


def model_metadata(name: str, backend: str, input_shape: list[int], num_classes: int) -> ModelMetadataResponse:
    return ModelMetadataResponse(
        name=name,
        versions=["1"],
        platform=PLATFORMS.get(backend, backend),
        inputs=[
            TensorMetadata(name=INPUT_TENSOR, datatype="FP32", shape=[-1, *input_shape]),
            TensorMetadata(name=IMAGE_INPUT, datatype="BYTES", shape=[-1]),
        ],
        outputs=[TensorMetadata(name=OUTPUT_TENSOR, datatype="FP32", shape=[-1, num_classes])],
    )


def _shape_str(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """(JSON part, binary part) of a request body, by the Inference-Header-Content-Length header."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        n = int(header_length)
    except ValueError:
        raise WireError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 < n <= len(body):
        raise WireError(f"{HEADER_LENGTH} is {n} but the body has {len(body)} bytes")
    return body[:n], memoryview(body)[n:]


def _parse(json_part: bytes) -> InferRequest:
    if not json_part.strip():
        raise WireError("empty request body: send a KServe v2 inference request (JSON)")
    try:
        return InferRequest.model_validate_json(json_part)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"])) or "body"
        if first["type"] == "json_invalid":
            raise WireError(f"malformed JSON: {_lone_surrogate(json_part) or first['msg']}") from None
        raise WireError(f"not a KServe v2 inference request: {where}: {first['msg']}") from None


# an escaped high surrogate not followed by a low one, or a low one not after a high one
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|(?<![0-9a-fA-F]{4})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _lone_surrogate(json_part: bytes) -> str | None:
    """Where JSON text escapes half of a UTF-16 surrogate pair (not Unicode), said so; else None."""
    m = _LONE_SURROGATE.search(json_part)
    if m is None:
        return None
    line = json_part.count(b"\n", 0, m.start()) + 1
    column = m.start() - (json_part.rfind(b"\n", 0, m.start()) + 1) + 1
    return f"a lone UTF-16 surrogate {m.group().decode()} at line {line} column {column} (JSON text must be Unicode)"


def _deserialize_bytes(raw: memoryview, count: int, name: str) -> list[bytes]:
    """BYTES tensor in binary form: each element is a little-endian uint32 length and then the bytes.
    The walk stops at the first element past `count` (the shape's, already checked against the limit)."""
    out, i = [], 0
    while i < len(raw):
        if len(out) == count:
            raise WireError(f"input {name!r}: shape says {count} elements but the BYTES data holds more than that")
        if i + 4 > len(raw):
            raise WireError(f"input {name!r}: BYTES data ends inside an element's 4-byte length")
        (n,) = struct.unpack_from("<I", raw, i)
        i += 4
        if i + n > len(raw):
            raise WireError(f"input {name!r}: BYTES element of {n} bytes runs past the end of the data")
        out.append(bytes(raw[i : i + n]))
        i += n
    if len(out) != count:
        raise WireError(f"input {name!r}: shape says {count} elements but the BYTES data holds {len(out)}")
    return out


def _flatten(data: list, out: list) -> list:
    for v in data:
        if isinstance(v, list):
            _flatten(v, out)
        else:
            out.append(v)
    return out


def _b64(s: Any, name: str, i: int) -> bytes:
    if not isinstance(s, str):
        raise WireError(f"input {name!r}: BYTES element {i} must be a base64 string in JSON")
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"input {name!r}: BYTES element {i} is not valid base64") from None


def _float_tensor(data: list, name: str) -> np.ndarray:
    try:
        arr = np.asarray(data)
    except ValueError:  # a ragged nested list
        raise WireError(f"input {name!r}: data is not a rectangular list of numbers") from None
    if arr.dtype.kind not in "iuf":
        raise WireError(f"input {name!r}: FP32 data must be numbers")
    return arr.astype(np.float32, copy=False).ravel()


def decode_infer_request(
    body: bytes, header_length: str | None, input_shape: list[int], max_images: int | None = None
) -> Decoded:
    """Parse and check a v2 inference request for a model that takes float32 [N, *input_shape]; a
    request of more than `max_images` images (the shape's N) is refused (TooManyImages) before its
    elements are read."""
    json_part, binary = split_body(body, header_length)
    req = _parse(json_part)
    if len(req.inputs) != 1:
        raise WireError(
            f"the model takes exactly one input (FP32 {INPUT_TENSOR!r} [N, "
            f"{', '.join(map(str, input_shape))}] or BYTES {IMAGE_INPUT!r} [N]), "
            f"got {len(req.inputs)}"
        )
    inp = req.inputs[0]
    dtype = inp.datatype.upper()
    size = _check_input(inp, binary)
    tensor = images = None
    if dtype == "FP32":
        tensor = _decode_fp32(inp, size, binary, input_shape, max_images)
    elif dtype == "BYTES":
        images = _decode_bytes(inp, size, binary, max_images)
    else:
        raise WireError(
            f"input {inp.name!r}: datatype {inp.datatype} is not taken; send FP32 [N, "
            f"{', '.join(map(str, input_shape))}] or BYTES encoded images"
        )
    return Decoded(req.id, tensor, images, _binary_output(req))


def _check_input(inp: RequestInput, binary: memoryview) -> int | None:
    """Check the input's shape and where its data is (JSON or binary); returns its binary_data_size."""
    name, shape = inp.name, inp.shape
    if any(d < 0 for d in shape):
        raise WireError(f"input {name!r}: shape {_shape_str(shape)} has a negative dimension")
    size = (inp.parameters or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0:
            raise WireError(f"input {name!r}: binary_data_size must be a non-negative integer")
        if size != len(binary):
            raise WireError(
                f"input {name!r}: binary_data_size is {size} but {len(binary)} bytes follow the JSON header"
            )
        if inp.data is not None:
            raise WireError(f"input {name!r}: has both binary_data_size and JSON data")
    elif len(binary):
        raise WireError(f"{len(binary)} bytes of binary data follow the JSON but no input has binary_data_size")
    elif inp.data is None:
        raise WireError(f"input {name!r}: no data (send it as JSON `data` or binary with binary_data_size)")
    return size


def _decode_fp32(
    inp: RequestInput, size: int | None, binary: memoryview, input_shape: list[int], max_images: int | None
) -> np.ndarray:
    """An FP32 [N, *input_shape] input as a finite float32 tensor."""
    name, shape = inp.name, inp.shape
    count = math.prod(shape)
    if len(shape) != 4 or shape[0] < 1 or list(shape[1:]) != list(input_shape):
        raise WireError(
            f"input {name!r}: shape {_shape_str(shape)} does not fit the model's {_shape_str([-1, *input_shape])}"
        )
    if max_images is not None and shape[0] > max_images:
        raise TooManyImages(shape[0], max_images)
    if size is not None:
        if size != 4 * count:
            raise WireError(f"input {name!r}: FP32 {_shape_str(shape)} needs {4 * count} bytes, got {size}")
        flat = np.frombuffer(binary, dtype="<f4").copy()  # writable, and free of the request body
    else:
        flat = _float_tensor(inp.data, name)
        if flat.size != count:
            raise WireError(
                f"input {name!r}: shape {_shape_str(shape)} has {count} elements but the data holds {flat.size}"
            )
    tensor = np.ascontiguousarray(flat.reshape(shape), dtype=np.float32)
    if not np.isfinite(tensor).all():  # the answer would be NaN, which JSON cannot hold
        raise WireError(f"input {name!r}: FP32 data holds NaN or infinity; the model takes finite numbers")
    return tensor


def _decode_bytes(inp: RequestInput, size: int | None, binary: memoryview, max_images: int | None) -> list[bytes]:
    """A BYTES [N] (or [N, 1]) input as the encoded image files it holds."""
    name, shape = inp.name, inp.shape
    count = math.prod(shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        raise WireError(f"input {name!r}: BYTES images take shape [N] or [N, 1], got {_shape_str(shape)}")
    if max_images is not None and count > max_images:
        raise TooManyImages(count, max_images)
    if size is not None:
        return _deserialize_bytes(binary, count, name)
    if len(inp.data) != shape[0]:  # before flattening a list that may be far longer than the shape
        raise WireError(
            f"input {name!r}: shape {_shape_str(shape)} has {count} elements but the data holds {len(inp.data)}"
        )
    flat = _flatten(inp.data, [])
    if len(flat) != count:
        raise WireError(
            f"input {name!r}: shape {_shape_str(shape)} has {count} elements but the data holds {len(flat)}"
        )
    return [_b64(s, name, i) for i, s in enumerate(flat)]


def _binary_output(req: InferRequest) -> bool:
    """Whether the request asks for the output in binary form; checks the outputs it names."""
    binary_output = bool((req.parameters or {}).get("binary_data_output", False))
    for out in req.outputs or []:
        if out.name != OUTPUT_TENSOR:
            raise WireError(f"unknown output {out.name!r}; the model's output is {OUTPUT_TENSOR!r}")
        if out.parameters and "binary_data" in out.parameters:
            binary_output = bool(out.parameters["binary_data"])
    return binary_output


def encode_infer_response(
    model: str, logits: np.ndarray, request_id: str | None, binary: bool
) -> tuple[bytes, int | None]:
    """(body, JSON header length or None): the logits as JSON data, or binary after the JSON.
    NonFiniteOutput where a logit is NaN or infinity (the same answer as /predict gives, in either form)."""
    check_finite(logits)
    logits = np.ascontiguousarray(logits, dtype="<f4")
    out: dict[str, Any] = {"name": OUTPUT_TENSOR, "datatype": "FP32", "shape": list(logits.shape)}
    raw = b""
    if binary:
        raw = logits.tobytes()
        out["parameters"] = {"binary_data_size": len(raw)}
    else:
        out["data"] = logits.ravel().tolist()
    resp: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": [out]}
    if request_id is not None:
        resp["id"] = request_id
    head = json.dumps(resp, separators=(",", ":"), allow_nan=False).encode()
    return (head + raw, len(head)) if binary else (head, None)
