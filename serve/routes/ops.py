"""Operations: /health, /models, /metrics (Prometheus), the page at / and the API docs (/docs, /redoc)."""

from __future__ import annotations

import importlib.resources
import os
import pathlib

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from .. import protocol
from ..service import Service
from . import service

router = APIRouter(tags=["operation"])

DOCS_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


@router.get("/health")
async def health(svc: Service = Depends(service)) -> JSONResponse:
    """200 once the model is loaded and warmed up; 503 while warming up or shutting down. `pid`: the
    process that answered (with --workers N, each has its own model and batcher)."""
    status = svc.status
    return JSONResponse(
        {"status": status, "model": svc.name, "pid": os.getpid()}, status_code=200 if status == "ready" else 503
    )


@router.get("/models", response_model=protocol.ModelsResponse)
async def models(svc: Service = Depends(service)) -> dict:
    """The model this server runs, with its card (classes, input size, preprocessing, provenance)."""
    p = svc.predictor
    return {
        "models": [
            {
                "name": svc.name,
                "backend": p.backend,
                "precision": getattr(p, "precision", "fp32"),
                "selection": getattr(p, "selection", ""),
                "device": str(getattr(p, "device", "")),
                "card": svc.card.to_dict(),
            }
        ]
    }


@router.get("/metrics", response_class=Response)
async def metrics(svc: Service = Depends(service)) -> Response:
    """Prometheus text: requests, errors, latency and batch-size histograms, queue depth."""
    return Response(svc.metrics.render(), media_type=svc.metrics.content_type)


PAGE = importlib.resources.files("serve").joinpath("static/index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(PAGE)


def _docs_files() -> pathlib.Path | None:
    """The folder of Swagger UI's and ReDoc's files as the fastapi-offline package keeps them (the
    `server` extra installs it), so /docs works without internet; None where it is not installed."""
    try:
        folder = pathlib.Path(str(importlib.resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if all((folder / name).is_file() for name in DOCS_FILES) else None


DOCS = _docs_files()


def _docs_urls(request: Request) -> dict[str, str]:
    root = request.scope.get("root_path", "").rstrip("/")
    openapi_url = root + request.app.openapi_url
    if DOCS is None:  # fastapi-offline is not installed: FastAPI's own (CDN) addresses
        return {"openapi_url": openapi_url}
    files = f"{root}/docs/files/"
    return {
        "openapi_url": openapi_url,
        "favicon": files + "favicon.png",
        "swagger_js": files + "swagger-ui-bundle.js",
        "swagger_css": files + "swagger-ui.css",
        "redoc_js": files + "redoc.standalone.js",
    }


@router.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    u = _docs_urls(request)
    extra = (
        {}
        if DOCS is None
        else {
            "swagger_js_url": u["swagger_js"],
            "swagger_css_url": u["swagger_css"],
            "swagger_favicon_url": u["favicon"],
        }
    )
    return get_swagger_ui_html(openapi_url=u["openapi_url"], title=f"{request.app.title}: API docs", **extra)


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    u = _docs_urls(request)
    extra = (
        {}
        if DOCS is None
        else {"redoc_js_url": u["redoc_js"], "redoc_favicon_url": u["favicon"], "with_google_fonts": False}
    )
    return get_redoc_html(openapi_url=u["openapi_url"], title=f"{request.app.title}: API docs", **extra)


@router.get("/docs/files/{name}", include_in_schema=False)
async def docs_file(name: str) -> FileResponse:
    if DOCS is None or name not in DOCS_FILES:
        raise HTTPException(404, f"no such file: /docs/files/{name}")
    return FileResponse(DOCS / name, media_type=DOCS_FILES[name])
