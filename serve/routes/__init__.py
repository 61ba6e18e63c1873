"""One APIRouter per concern: predict (/predict), kserve (the KServe v2 protocol under /v2), ops (health,
models, metrics, the page, the API docs). Each finds the app's Service through `service` (a dependency)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import protocol
from ..service import Service

ERROR_RESPONSES = {status: {"model": protocol.ErrorResponse} for status in (400, 401, 404, 413, 415, 503)}


def service(request: Request) -> Service:
    """The app's Service (a FastAPI dependency)."""
    return request.app.state.zoo


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """Every error the server answers: JSON {"error": message}."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body is over the limit of {limit:,} bytes (--max-body-mb)")
