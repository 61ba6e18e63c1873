"""The KServe v2 / Open Inference Protocol under /v2 (the wire format: serve/protocol.py)."""

from __future__ import annotations

import zlib

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from .. import protocol
from ..service import Service, non_finite
from . import ERROR_RESPONSES, BodyTooLarge, error, media_type, service

SERVER_NAME = "cnnzoo"
EXTENSIONS = ["binary_tensor_data"]  # the KServe v2 / Triton extensions this server speaks

router = APIRouter(prefix="/v2", tags=["KServe v2"])
NOT_FOUND = {404: {"model": protocol.ErrorResponse}}


@router.post(
    "/models/{model}/infer",
    response_model=None,
    responses={200: {"model": protocol.InferResponse}, **ERROR_RESPONSES},
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}}}
    },
)
async def infer(model: str, request: Request) -> Response:
    """KServe v2 inference: FP32 [N, C, H, W] or BYTES encoded images -> FP32 logits [N, classes]."""
    svc = service(request)  # (not a Depends: resolving one costs the hot route measurably)
    svc.check_model(model)
    svc.check_ready()
    media = media_type(request)
    if media.startswith(("image/", "multipart/")):  # any other type is read as JSON, as Triton does
        raise HTTPException(
            415,
            f"Content-Type {media!r} is not taken here: send a KServe v2 inference "
            "request (JSON; images as BYTES), or post images to /predict",
        )
    body = _decompress(await request.body(), request.headers.get("content-encoding", "").lower(), svc.options.max_body)
    try:
        req = await svc.off_loop(
            protocol.decode_infer_request,
            body,
            request.headers.get(protocol.HEADER_LENGTH),
            svc.card.input_shape,
            svc.options.max_images,
        )
    except protocol.TooManyImages as e:
        raise HTTPException(413, str(e)) from None
    except protocol.WireError as e:
        raise HTTPException(400, str(e)) from None
    logits = await svc.infer(req.tensor) if req.tensor is not None else await svc.infer_images(req.images)
    try:
        content, header_length = protocol.encode_infer_response(svc.name, logits, req.id, req.binary_output)
    except protocol.NonFiniteOutput as e:
        if req.tensor is None:  # from images, as /predict: the model's fault
            raise non_finite(e) from None
        # from FP32 values the client chose (finite, but far outside what preprocessing gives):
        # the client's input, not the server, is what the model cannot answer
        raise HTTPException(422, f"{e} (FP32 values far outside what preprocessing gives?)") from None
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={protocol.HEADER_LENGTH: str(header_length)}
    )


@router.get("", response_model=protocol.ServerMetadataResponse)
async def server_metadata() -> dict:
    from zoo import __version__

    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live")
async def live() -> dict:
    return {"live": True}


@router.get("/health/ready", response_model=None, responses={503: {"model": protocol.ErrorResponse}})
async def ready(svc: Service = Depends(service)) -> dict | Response:
    return _readiness(svc)


@router.get("/models/{model}", response_model=protocol.ModelMetadataResponse, responses=NOT_FOUND)
async def model_metadata(model: str, svc: Service = Depends(service)) -> protocol.ModelMetadataResponse:
    svc.check_model(model)
    return protocol.model_metadata(svc.name, svc.predictor.backend, svc.card.input_shape, svc.card.num_classes)


@router.get("/models/{model}/ready", response_model=None, responses=NOT_FOUND)
async def model_ready(model: str, svc: Service = Depends(service)) -> dict | Response:
    svc.check_model(model)
    return _readiness(svc)


def _readiness(svc: Service) -> dict | Response:
    if svc.draining:
        return error(503, "the server is shutting down")
    if not svc.ready:
        return error(503, "the model is still warming up")
    return {"ready": True}


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip or deflate request body (tritonclient's request compression), inflated to at most `limit`."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise HTTPException(415, f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or none)")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        raise HTTPException(400, f"body is not valid {encoding} data ({e})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(limit)
    return out


def add_request_schema(app: FastAPI) -> None:
    """Make the InferRequest schema part of the app's OpenAPI document (the infer route's
    openapi_extra refers to it)."""
    openapi = app.openapi

    def with_request_schema() -> dict:
        schema = openapi()
        request = protocol.InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for key, sub in request.pop("$defs", {}).items():
            schemas.setdefault(key, sub)
        schemas.setdefault("InferRequest", request)
        return schema

    app.openapi = with_request_schema
