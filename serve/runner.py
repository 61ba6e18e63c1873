"""`serve.run`: serve a model over HTTP until SIGTERM / SIGINT, in one process or in N worker processes.

    import serve
    serve.run("runs/lenet5-20261121-101500", port=8080, workers=2)   # returns once every request drained

What `zoo serve` does, for any caller (a pod's entrypoint, a Ray actor, a test): resolve MODEL (the one
MODEL rule, and a folder holding one model file: KServe's /mnt/models), say what will run and why
(infer.choose: a missing runtime or a damaged file fails here, before anything listens), bind the port,
say where it listens, then serve: every server process, the one or each worker, listens at once and loads
its model on a thread (live 200, ready 503 meanwhile: serve/starting.py), through `serve.worker.serve_on`:
one drain path (SIGTERM / SIGINT: readiness 503 at once, requests answered for the drain delay, then the
socket closes, requests in flight finish, exit 0), on uvicorn's public API only. The options are
serve/options.py's (RunOptions and ServeOptions); the logging is serve/logs.py's, in every process.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import TYPE_CHECKING, Any, Callable

from .options import OPTION_NAMES, RUN_OPTION_NAMES, RunOptions

if TYPE_CHECKING:
    import socket

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class ServeError(Exception):
    """Why the server cannot start (no such model, the port is taken, a worker failed to start): one line."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(model: str | os.PathLike | None = None, *, log: Callable[[str], None] = _stderr, **options: Any) -> None:
    """Serve `model` (a run directory, a model file, or a folder holding one model file (KServe's
    /mnt/models); None: the newest finished run under runs/) until SIGTERM / SIGINT, then drain and
    return. `options`: RunOptions' fields (host, port, workers, backend, precision, threads, log_level,
    log_format, drain_delay, timeouts, max_connections, cache_dir) and ServeOptions' (the app's limits
    and name); another name is a TypeError. `log` gets the start-up lines (the model and why that
    runtime, where it listens; with log_format "json", they are log records of "zoo.serve" instead).
    It listens before the model loads (live 200, ready 503 meanwhile). ServeError: the server could not
    start, one line (a model that fails to load: once it stopped)."""
    import logging
    import logging.config

    from zoo.text import plural

    from . import logs, worker

    unknown = set(options) - {*RUN_OPTION_NAMES, *OPTION_NAMES}
    if unknown:
        raise TypeError(f"serve.run() got unknown options: {', '.join(sorted(unknown))}")
    how = RunOptions(**{k: v for k, v in options.items() if k in RUN_OPTION_NAMES})
    app_options = {k: v for k, v in options.items() if k in OPTION_NAMES}
    if how.api_key_file is not None:
        if app_options.get("api_key"):
            raise ServeError("an API key and an API key file: give one (--api-key or --api-key-file)")
        app_options["api_key"] = read_api_key(how.api_key_file)
    settings = _settings(model, how, app_options)
    _writable(settings["cache_dir"])  # first: importing a runtime may write a temporary file
    choice = _choice(settings)
    logging.config.dictConfig(logs.log_config(how.log_format, how.log_level))
    if how.log_format == "json":
        log = logging.getLogger("zoo.serve").info
    log(choice)
    sockets, url = _listen(how.host, how.port, how.workers)
    uvicorn_options = _uvicorn_options(how)
    shown = settings.get("model_name") or _model_name(settings["model"])
    each = f"{how.workers} worker processes, each with " if how.workers > 1 else ""
    threads = f"{plural(settings['threads'], 'model thread')} and {plural(settings['decode_threads'], 'decode thread')}"
    log(f"Serving {shown} on {url} (page at /, API docs at /docs), {each}{threads}; loading the model")
    if how.host not in LOCAL_HOSTS and not settings.get("api_key"):
        log("Warning: listening beyond this machine without --api-key")
    if how.workers > 1:
        failure = worker.supervise(uvicorn_options, settings, sockets)
    else:
        failure = worker.serve_on(uvicorn_options, sockets[0], settings)
    if failure is not None:
        raise ServeError(failure)


def read_api_key(path: str | os.PathLike) -> str:
    """The API key in the file at `path` (a mounted Secret): all of it, less a trailing newline. ServeError
    (one line) where it is missing, unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as f:
            key = f.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ServeError(f"{path}: cannot read the API key file ({getattr(e, 'strerror', None) or e})") from None
    if not key.strip():
        raise ServeError(f"{path}: the API key file is empty")
    return key


def _settings(model: str | os.PathLike | None, how: RunOptions, app_options: dict[str, Any]) -> dict[str, Any]:
    """The worker settings (plain JSON-able values): the resolved model path, how it loads, how it drains,
    the app's options, the threads of each process (`thread_plan`)."""
    from zoo import rundir

    try:
        path = model_file(rundir.resolve_model(None if model is None else str(model)))
    except rundir.RunError as e:
        raise ServeError(str(e)) from None
    threads, decode_threads = thread_plan(how.workers, how.threads, app_options.get("decode_threads"))
    app_options = {**app_options, "decode_threads": decode_threads}
    cache_dir = None if how.cache_dir is None else os.path.abspath(how.cache_dir)
    loading = {"backend": how.backend, "precision": how.precision, "threads": threads, "cache_dir": cache_dir}
    return {"model": str(path), **loading, "drain_delay": how.drain_delay, **app_options}


def _model_name(path: str) -> str:
    from zoo import rundir

    return rundir.model_name(path)


def thread_plan(
    workers: int, threads: int | None, decode_threads: int | None, root: str | os.PathLike = "/"
) -> tuple[int, int]:
    """(the model's threads, the decode threads) of each server process: those given, else an equal share
    of the CPUs the server may use (zoo.hardware.usable_cpu_count: the affinity, capped by the cgroup's
    CPU quota, so a pod limited to 2 CPUs on a 64-core node counts 2; `root`: where /proc and /sys are),
    at most 4 for decoding."""
    from zoo.hardware import usable_cpu_count

    share = max(1, usable_cpu_count(root) // workers)
    return threads or share, decode_threads or min(4, share)


def model_file(path: str | os.PathLike) -> pathlib.Path:
    """What serves from `path` (as zoo.rundir.resolve_model gives it): a run directory or a model file as
    it is; a folder without a run's files but with exactly one model file (KServe copies a storageUri to
    /mnt/models), that file. RunError (one line) for a folder with none or several."""
    import infer.files
    from zoo import rundir

    path = pathlib.Path(path)
    if not path.is_dir() or infer.files.found(path):
        return path
    models = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in rundir.MODEL_SUFFIXES)
    if len(models) == 1:
        return models[0]
    if not models:
        raise rundir.RunError(
            f"{path}: neither a run directory nor a folder with a model file (.onnx, .safetensors, .engine)"
        )
    names = ", ".join(p.name for p in models)
    raise rundir.RunError(f"{path}: {len(models)} model files ({names}); name the one to serve")


def _choice(settings: dict[str, Any]) -> str:
    """The line that says what will run and why, decided before anything is loaded (a missing runtime or
    a damaged model file is a ServeError here, before the server listens)."""
    import infer
    from zoo import rundir

    try:
        _, selection = infer.choose(settings["model"], settings["backend"], settings["precision"])
    except (infer.ModelFileError, infer.BackendUnavailable, OSError, ValueError) as e:
        raise ServeError(str(e)) from None
    return f"{rundir.model_name(settings['model'])}: {selection}"


def _writable(cache_dir: str | None) -> None:
    """Make `cache_dir` (--cache-dir) and its tmp/ folder, and point this process's and its workers'
    temporary folder ($TMPDIR) there and the libraries' cache folder ($XDG_CACHE_HOME) at it: ONNX
    Runtime writes into both as it is imported (its telemetry; ORT_DISABLE_TELEMETRY=1 stops it). With
    it, the server writes nowhere else (a read-only root filesystem)."""
    import tempfile

    if cache_dir is None:
        return
    tmp = os.path.join(cache_dir, "tmp")
    try:
        os.makedirs(tmp, exist_ok=True)
        with tempfile.TemporaryFile(dir=tmp):
            pass
    except OSError as e:
        raise ServeError(
            f"{cache_dir}: cannot write there ({e.strerror or e}); --cache-dir names a writable folder"
        ) from None
    os.environ["TMPDIR"] = tempfile.tempdir = tmp
    os.environ["XDG_CACHE_HOME"] = cache_dir


def _listen(host: str, port: int, workers: int) -> tuple[list[socket.socket], str]:
    """(one listening socket per worker, all on the one port; the URL they answer on)."""
    import socket

    from . import worker

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sockets = worker.listening_sockets(host, port, workers, family)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port") from None
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    return sockets, f"http://{url_host}:{sockets[0].getsockname()[1]}"


def _uvicorn_options(how: RunOptions) -> dict[str, Any]:
    """uvicorn.Config's options; raises the open-file limit, which the default max_connections follows."""
    from . import logs, worker

    open_files = worker.raise_open_file_limit()
    max_connections = how.max_connections
    if max_connections is None:
        max_connections = worker.default_max_connections(open_files)
    return dict(
        log_level=how.log_level,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=how.timeout_graceful_shutdown,
        log_config=logs.log_config(how.log_format, how.log_level),
        **worker.connection_options(how.timeout_header, max_connections),
    )
