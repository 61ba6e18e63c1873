"""POST /predict: images -> the top-k labels of each (zoo.answer's vocabulary).

Two ways in, one answer (`Service.classify`): the route below (multipart forms, and the documentation of
both), and `answer_image`, plain ASGI for an image sent as the body, which the edge (serve/app.py) calls
without FastAPI's routing and validation: it is the hot path of the server.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import Callable

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from zoo import answer

from .. import protocol
from ..service import Service, json_bytes
from . import ERROR_RESPONSES, media_type, service

log = logging.getLogger("zoo.serve")

IMAGE_HELP = "send an image as multipart/form-data (field 'file') or as the request body with an image/* content type"
TOP_K = {"default": answer.DEFAULT_TOP_K, "ge": 1, "le": 1000}  # the top_k query parameter (route, answer_image)

router = APIRouter(tags=["classify"])


@router.post(
    "/predict",
    response_model=None,
    responses={200: {"model": protocol.PredictResponse}, **ERROR_RESPONSES},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    }
                },
                "image/*": {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
)
async def predict(request: Request, top_k: int = Query(**TOP_K, description="labels per image")) -> Response:
    """Classify one image (or several `file` parts): per image, the top-k labels with softmax probabilities."""
    svc = service(request)  # (not a Depends: resolving one costs the hot route measurably)
    images = await read_images(request, svc.options.max_images)
    return Response(await svc.classify(images, top_k), media_type="application/json")


async def answer_image(svc: Service, scope: dict, receive: Callable, send: Callable) -> None:
    """POST /predict with the image as the body, as plain ASGI: the same checks, errors and answer as
    the route above, without FastAPI's routing and validation."""
    try:
        top_k = _query_int(scope, "top_k", default=TOP_K["default"], low=TOP_K["ge"], high=TOP_K["le"])
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if not body:
            raise HTTPException(400, "empty request body: " + IMAGE_HELP)
        status, content, headers = 200, await svc.classify([body], top_k), None
    except HTTPException as e:
        status, content, headers = e.status_code, json_bytes({"error": str(e.detail)}), e.headers
    except Exception as e:
        log.error("POST /predict failed: %s: %s", type(e).__name__, e)
        status, content, headers = (
            500,
            json_bytes({"error": f"internal server error ({type(e).__name__}); the server log has the details"}),
            None,
        )
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


def _query_int(scope, key: str, *, default: int, low: int, high: int) -> int:
    """An integer query parameter, checked as FastAPI's Query(ge=low, le=high) would (422 otherwise)."""
    values = (
        [
            v
            for k, v in urllib.parse.parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            if k == key
        ]
        if scope["query_string"]
        else []
    )
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise HTTPException(
            422, f"query.{key}: Input should be a valid integer, unable to parse string as an integer"
        ) from None
    if value < low:
        raise HTTPException(422, f"query.{key}: Input should be greater than or equal to {low}")
    if value > high:
        raise HTTPException(422, f"query.{key}: Input should be less than or equal to {high}")
    return value


@contextlib.asynccontextmanager
async def _form(request: Request, max_images: int):
    """The multipart form, parsed with at most max_images files (413 past them, as v2 answers)."""
    try:
        form = await request.form(max_files=max_images, max_fields=max_images)
    except HTTPException as e:  # Starlette answers "Too many files" 400; it is the images limit
        if str(e.detail).startswith("Too many files"):
            raise HTTPException(413, str(protocol.TooManyImages(None, max_images))) from None
        raise
    try:
        yield form
    finally:
        await form.close()


async def read_images(request: Request, max_images: int) -> list[bytes]:
    """The images of a multipart form's `file` parts (415 for any other body)."""
    media = media_type(request)
    if media == "multipart/form-data":
        async with _form(request, max_images) as form:
            parts = form.getlist("file")
            if not parts:
                raise HTTPException(400, "no 'file' field in the form: " + IMAGE_HELP)
            images = []
            for part in parts:
                if isinstance(part, str):
                    raise HTTPException(400, "the 'file' field must be a file upload, not text")
                images.append(await part.read())
            return images
    if not media:
        raise HTTPException(415, "no Content-Type: " + IMAGE_HELP)
    raise HTTPException(415, f"Content-Type {media!r} is not taken: " + IMAGE_HELP)
