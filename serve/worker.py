"""What one server process runs: settings (plain JSON-able values) -> a loaded model -> the app.

`zoo serve` calls `build(settings)` itself for one process. With `--workers N` it puts the settings in
the environment and hands uvicorn's process supervisor the factory `serve.worker:app_from_environment`:
every worker is a fresh (spawned) interpreter that loads its own copy of the model and runs its own
batcher and event loop on its own listening socket (`listening_sockets`: one SO_REUSEPORT socket per
worker, all bound by the parent to the one port), so HTTP parsing, image decoding and the model run
in parallel on several cores. The supervisor restarts a worker that dies and, on
SIGTERM, stops each one the way a single server stops (requests in flight finish).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

SETTINGS_ENV = "ZOO_SERVE_SETTINGS"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# create_app's keyword arguments that `settings` may carry
APP_OPTIONS = ("max_batch_size", "max_delay_ms", "max_body_mb", "max_image_pixels", "api_key", "model_name",
               "max_queue", "max_images", "timeout_body")
RESERVED_FILES = 64  # open files a server process keeps for itself (model, libraries, pipes, log)


def load_predictor(settings: dict):
    """The Predictor the settings name (infer.load's errors pass through)."""
    import infer

    return infer.load(settings["model"], backend=settings.get("backend", "auto"),
                      precision=settings.get("precision", "auto"), threads=settings.get("threads"),
                      spin_wait=False)  # between batches the CPU belongs to the event loop


def build(settings: dict, predictor=None):
    """The app for `settings`: {"model": path, "backend", "precision", "threads", and create_app's options}."""
    from .app import create_app

    if predictor is None:
        predictor = load_predictor(settings)
    return create_app(predictor, **{k: settings[k] for k in APP_OPTIONS if settings.get(k) is not None})


def app_from_environment():
    """uvicorn's app factory in each worker process: the app for the settings in $ZOO_SERVE_SETTINGS."""
    settings = json.loads(os.environ[SETTINGS_ENV])
    logging.basicConfig(level=settings.get("log_level", "info").upper(),
                        format=LOG_FORMAT.replace("%(name)s", "%(name)s[%(process)d]"))
    raise_open_file_limit()
    app = build(settings)
    drain_on_signals(app.state.zoo)
    return app


def drain_on_signals(state) -> None:
    """In a worker process: SIGTERM / SIGINT start draining at once (new requests 503 + Connection: close),
    as one `zoo serve` process does, then uvicorn's own handler begins its graceful shutdown. uvicorn
    installs its handlers before it loads the app (this runs while it does), so this chains onto them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def drain(signum, frame, previous=previous):
            state.start_draining()
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, drain)


def raise_open_file_limit() -> int | None:
    """Raise this process's open-file soft limit to its hard limit (every connection takes a file), and
    return the soft limit now (None: unlimited)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # (macOS refuses an unlimited soft limit: keep the one there is)
            pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def default_max_connections(open_files: int | None) -> int | None:
    """--max-connections' default: the open-file limit less RESERVED_FILES (None: no limit)."""
    return None if open_files is None else max(16, open_files - RESERVED_FILES)


def connection_options(timeout_header: float, max_connections: int | None) -> dict:
    """uvicorn.Config's options for the connection limits: the header timeout (serve/connection.py) and
    at most `max_connections` connections served at once (uvicorn answers a request on one more 503 +
    Connection: close, /health included: a load balancer then sees this process as full)."""
    import functools

    from .connection import HeaderTimeout

    return {"http": functools.partial(HeaderTimeout, timeout=timeout_header), "ws": "none",
            "limit_concurrency": None if max_connections is None else max_connections + 1}


def listening_sockets(host: str, port: int, count: int, family) -> list:
    """`count` sockets listening on host:port (0: any free port). Several are bound with SO_REUSEPORT,
    one per worker, so that the kernel spreads new connections evenly over the workers; with one socket
    shared by all, the first worker to wake accepts a whole burst of connections while the others idle.
    The port is first bound without SO_REUSEPORT, so a port already in use is still an error (and never
    silently shared with another server). OSError when the port is taken."""
    import socket

    def bound(reuse_port: bool) -> socket.socket:
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((host, port))
        except OSError:
            s.close()
            raise
        return s

    if count == 1 or not hasattr(socket, "SO_REUSEPORT"):
        sockets = [bound(False)]
    else:
        with bound(False) as probe:  # the port is free (or pick one), then the group takes it
            port = probe.getsockname()[1]
        sockets = []
        try:
            for _ in range(count):
                sockets.append(bound(True))
        except OSError:
            for s in sockets:
                s.close()
            raise
    for s in sockets:
        s.listen(2048)
    return sockets


def supervise(config, sockets: list) -> None:
    """Run a worker process per socket under uvicorn's supervisor (restarts, SIGTERM, SIGHUP), each worker
    given only its own socket; one socket (no SO_REUSEPORT here): all `config.workers` share it."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors.multiprocess import Multiprocess, Process

    log = logging.getLogger("uvicorn.error")

    class OneSocketEach(Multiprocess):
        def start(self, i: int) -> Process:
            process = Process(self.config, [self.sockets[i]])
            process.start()
            return process

        def init_processes(self) -> None:
            self.processes = [self.start(i % len(self.sockets)) for i in range(self.processes_num)]

        def keep_subprocess_alive(self) -> None:
            for i, process in enumerate(self.processes):
                if self.should_exit.is_set():
                    return
                if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                    continue
                process.kill()
                process.join()
                if process.exitcode == STARTUP_FAILURE:  # it would fail the same way again
                    log.error("worker process [%s] failed to start; stopping", process.pid)
                    self.should_exit.set()
                    return
                log.info("worker process [%s] died; starting another", process.pid)
                self.processes[i] = self.start(i % len(self.sockets))

        def restart_all(self) -> None:  # SIGHUP: replace each worker once its replacement is ready
            for i, old in enumerate(self.processes):
                new = self.start(i % len(self.sockets))
                if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                    new.kill()
                    new.join()
                    return
                old.terminate()
                old.join()
                self.processes[i] = new

        def handle_ttin(self) -> None:  # the sockets were made for --workers processes
            log.info("SIGTTIN ignored: the number of workers is fixed by --workers")

        handle_ttou = handle_ttin

    supervisor = OneSocketEach(config, sockets=sockets)  # (its __init__ installs its signal handlers)
    stop_accepting_on_signals(sockets, supervisor)
    supervisor.run()


def stop_accepting_on_signals(sockets: list, supervisor) -> None:
    """In the supervisor: on SIGTERM / SIGINT close its copies of the listening sockets (the workers close
    theirs as they drain, and new connections are then refused at once, instead of queueing on a socket
    no one accepts from and being reset when the supervisor exits) and pass SIGTERM on to the workers
    at once (they start draining now, not at the supervisor's next check); then its own handler."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def stop(signum, frame, previous=previous):
            for sock in sockets:
                sock.close()
            if signum == signal.SIGTERM:  # (Ctrl+C sends SIGINT to the workers itself; twice forces them)
                for process in list(supervisor.processes):
                    with contextlib.suppress(ProcessLookupError, TypeError):
                        os.kill(process.pid, signal.SIGTERM)
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, stop)
