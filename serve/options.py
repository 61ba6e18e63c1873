"""The server's options and their defaults, in one place: `serve.run(model, **options)` takes both kinds,
`create_app(predictor, **options)` the app's (ServeOptions), `zoo serve`'s flags show them as their
defaults, and serve/worker.py carries them to each process."""

from __future__ import annotations

import dataclasses

from zoo.data.preprocess import DEFAULT_MAX_PIXELS


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """What one app is built with (every field a plain JSON-able value).

    max_batch_size / max_delay_ms: the dynamic batcher's limits. max_body_mb: larger request bodies
    are refused (413). max_image_pixels: larger images are refused as decompression bombs (400; None:
    no limit). api_key: if set, `Authorization: Bearer KEY` is required on everything but the health
    endpoints and the page at / (which asks for the key). model_name: the name in URLs and answers
    (None: the predictor's). max_queue: requests that may wait for the model before new ones get 503.
    decode_threads: threads that decode images and parse v2 bodies (None: usable CPUs, at most 4).
    max_images: images in one request (/predict files, v2 N), more are refused (413) before any is
    decoded; a request of several images runs max_batch_size at a time, so the memory it takes is
    bounded by the batch, not by the request. timeout_body: seconds a request's body may take to
    arrive, from its first read (408 past them; None: no limit). max_decode_mb: the memory images
    decoding at once may hold together (serve/budget.py: larger decodes wait for room; an image that alone
    needs more is refused, 413). 1024: a 64-megapixel RGB photo (256 MB) decodes beside three more,
    a 16-bit one of the same size (18 bytes a pixel, 1.2 GB) is refused.
    """

    max_batch_size: int = 32
    max_delay_ms: float = 5.0
    max_body_mb: float = 16.0
    max_image_pixels: int | None = DEFAULT_MAX_PIXELS
    api_key: str | None = None
    model_name: str | None = None
    max_queue: int = 1024
    decode_threads: int | None = None
    max_images: int = 256  # 8 batches of the default 32
    timeout_body: float | None = 60.0
    max_decode_mb: float = 1024.0

    @property
    def max_body(self) -> int:
        """max_body_mb in bytes."""
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_decode(self) -> int:
        """max_decode_mb in bytes."""
        return int(self.max_decode_mb * 1024 * 1024)


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")  # uvicorn's; info logs one line per request
LOG_FORMATS = ("text", "json")  # json: one JSON object per line (serve/logs.py), for log collectors


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How `serve.run` runs the server, beside the app's ServeOptions (every field a plain value).

    host / port: where it listens (port 0: any free port). workers: server processes sharing the port,
    each with its own model and batcher. backend / precision / threads: how the model loads
    (infer.load; threads None: the library's own, with several workers the usable CPUs / workers each).
    log_level: one of LOG_LEVELS, uvicorn's and ours; log_format: one of LOG_FORMATS. drain_delay: on
    SIGTERM, seconds readiness answers 503 while requests are still answered and the socket stays open
    (a load balancer's time to drop the server: Kubernetes endpoints take seconds), before the server
    stops accepting. timeout_graceful_shutdown: then, seconds requests in flight may take to finish.
    cache_dir: the one folder the server writes (OpenVINO's compiled models, ONNX Runtime's TensorRT
    engines, temporary files; None: OpenVINO caches nothing, engines go under $ZOO_CACHE).
    timeout_header: seconds a client may take to send a request's headers. max_connections: connections
    served at once per process (None: the open-file limit less serve.worker.RESERVED_FILES).
    api_key_file: a file holding the API key (a mounted Secret; all of it, less a trailing newline), in
    place of ServeOptions' api_key.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    backend: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    log_level: str = "info"
    log_format: str = "text"
    drain_delay: float = 0.0  # a laptop's Ctrl+C stops at once; a pod passes its endpoints' lag (deploy/: 5)
    timeout_graceful_shutdown: float = 30.0
    timeout_header: float = 10.0
    max_connections: int | None = None
    cache_dir: str | None = None
    api_key_file: str | None = None


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(ServeOptions))
RUN_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(RunOptions))
DEFAULTS = ServeOptions()
RUN_DEFAULTS = RunOptions()
