"""What one server process runs: settings (plain JSON-able values) -> a loaded model -> the app, served
by `serve_on`, the one way every server process serves and drains.

`serve.run` (serve/runner.py) serves one process (`serve_on`). With `workers > 1` it runs `Supervisor`,
our own (uvicorn's public API only: `serve_on` in each worker, given the settings and uvicorn's options
as arguments): every worker is a
fresh (spawned) interpreter that loads its own copy of the model and runs its own batcher and event loop
on its own listening socket (`listening_sockets`: one SO_REUSEPORT socket per worker, all bound by the
parent to the one port, passed to the child by multiprocessing as a file descriptor), so HTTP parsing,
image decoding and the model run in parallel on several cores. Every process listens before its model
loads (serve/starting.py: live 200, ready 503 meanwhile). The supervisor restarts a worker that
dies (with a back-off while they die before serving), on SIGHUP replaces each worker once its
replacement serves (its model loaded and warmed up), and on SIGTERM / SIGINT stops each one the way a
single server stops (readiness 503, requests answered for the drain delay, then in-flight ones finish).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from types import FrameType

    import uvicorn
    from fastapi import FastAPI

    from infer.predictor import Predictor


RESERVED_FILES = 64  # open files a server process keeps for itself (model, libraries, pipes, log)


def load_predictor(settings: dict) -> Predictor:
    """The Predictor the settings name (infer.load's errors pass through)."""
    import infer

    return infer.load(
        settings["model"],
        backend=settings.get("backend", "auto"),
        precision=settings.get("precision", "auto"),
        threads=settings.get("threads"),
        spin_wait=False,
        cache_dir=settings.get("cache_dir"),
    )  # between batches the CPU belongs to the event loop


def build(settings: dict, predictor: Predictor | None = None) -> FastAPI:
    """The app for `settings`: {"model": path, "backend", "precision", "threads", and any of
    serve.options.ServeOptions' fields}."""
    from .app import create_app
    from .options import OPTION_NAMES

    if predictor is None:
        predictor = load_predictor(settings)
    return create_app(predictor, **{k: settings[k] for k in OPTION_NAMES if k in settings})


def serve_on(
    options: dict,
    sock: socket.socket,
    settings: dict,
    predictor: Predictor | None = None,
    ready: Connection | None = None,
) -> str | None:
    """Serve the model `settings` name on `sock` (a listening socket) with uvicorn.Config's `options`,
    until SIGTERM / SIGINT, then drain (`drain_on_signals`) and return None; or return why the model
    could not be loaded (one line), once the server stopped. The one way every server process serves:
    the only one, or each worker. It listens at once and loads the model on a thread (serve/starting.py:
    live 200 and ready 503 meanwhile); `predictor`: one loaded already. `ready` (a pipe's sending end),
    if given, gets True once the model is loaded and warmed up, or the failure's line."""
    import threading

    import uvicorn

    from .starting import Starting

    app = Starting(settings, predictor)

    def factory() -> Starting:  # uvicorn calls it inside Server.run, after it installed its signal handlers
        drain_on_signals(app.drain)
        return app

    server = uvicorn.Server(uvicorn.Config(factory, factory=True, **options))
    app.stop = lambda: setattr(server, "should_exit", True)
    said = threading.Thread(target=_say_ready, args=(server, app, ready), daemon=True)
    if ready is not None:
        said.start()
    # uvicorn re-raises the signal it caught once it has shut down; a no-op handler makes that a clean exit 0
    # (or a return to serve.run's caller, whose own handlers are put back then)
    main = threading.current_thread() is threading.main_thread()  # (signals reach the main thread only)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT) if main}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if ready is not None:
        said.join()
        if app.failure is not None:
            ready.send(app.failure)
        ready.close()
    return app.failure


def _say_ready(server: uvicorn.Server, app, ready: Connection) -> None:
    """Send True on `ready` once `app` (serve.starting.Starting) is ready, unless the server stops first."""
    while not app.ready:
        if server.should_exit or app.failure is not None:
            return
        time.sleep(0.05)
    ready.send(True)


def drain_on_signals(drain: Callable[[], float]) -> None:
    """SIGTERM / SIGINT: `drain()` at once (readiness 503, requests still answered), then, after the seconds
    it returns (the drain delay), uvicorn's own handler begins its graceful shutdown (the socket closes,
    requests in flight finish). A second signal stops at once. uvicorn installs its handlers before it
    loads the app (this runs while it does: serve_on's factory), so this chains onto them."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    timers: list[threading.Timer] = []

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def on_signal(signum, frame, previous=previous):
            if timers:  # the second signal: stop now
                timers.pop().cancel()
                previous(signum, frame)
                return
            delay = drain()
            if delay <= 0:
                previous(signum, frame)
                return
            log.info(
                "Received %s: not ready; answering requests %g s more (--drain-delay), then stopping",
                signal.Signals(signum).name,
                delay,
            )
            timers.append(threading.Timer(delay, previous, (signum, frame)))
            timers[-1].daemon = True
            timers[-1].start()

        signal.signal(sig, on_signal)


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

    return {
        "http": functools.partial(HeaderTimeout, timeout=timeout_header),
        "ws": "none",
        "limit_concurrency": None if max_connections is None else max_connections + 1,
    }


def listening_sockets(host: str, port: int, count: int, family: socket.AddressFamily) -> list[socket.socket]:
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


log = logging.getLogger("uvicorn.error")  # the supervisor's lines look like uvicorn's own
RESTART_DELAYS = (0.5, 30.0)  # seconds before replacing a worker that died before it served: first, most
READY_TIMEOUT = 60.0  # seconds a replacement on SIGHUP may take to load its model and serve
STOP_MARGIN = 5.0  # seconds past --timeout-graceful-shutdown a worker may take to stop before it is killed


def serve_worker(options: dict, settings: dict, sock: socket.socket, ready: Connection) -> None:
    """A worker process's main: `serve_on` the socket the supervisor bound; `ready` gets True once its model
    is loaded and warmed up, or the line that says why it could not be (then it exits STARTUP_FAILURE)."""
    import sys

    from uvicorn.config import STARTUP_FAILURE

    raise_open_file_limit()
    if serve_on(options, sock, settings, ready=ready) is not None:
        sys.exit(STARTUP_FAILURE)


class Worker:
    """One spawned worker process serving on `sock`, and the pipe on which it says it serves."""

    def __init__(self, options: dict, settings: dict, sock: socket.socket) -> None:
        import multiprocessing

        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked threads or model
        self.ready, sending = spawn.Pipe(duplex=False)
        # the socket and the pipe reach the child as file descriptors passed by multiprocessing
        self.process = spawn.Process(
            target=serve_worker, args=(options, settings, sock, sending), name="zoo-serve-worker"
        )
        self.process.start()
        sending.close()
        self.serving = self.terminated = False
        self.failure: str | None = None  # why its model could not be loaded, as it said

    @property
    def pid(self) -> int:
        return self.process.pid

    def has_served(self) -> bool:
        """Whether it has said it serves (False while it starts, or when it died or failed first)."""
        if not self.serving and not self.ready.closed and self.ready.poll():
            try:
                said = self.ready.recv()
            except EOFError:  # it exited before it served
                self.ready.close()
            else:
                self.serving = said is True
                self.failure = None if self.serving else str(said)
        return self.serving

    def terminate(self) -> None:
        """SIGTERM (once): the worker drains (requests in flight finish) and exits."""
        if not self.terminated and self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
        self.terminated = True


class Supervisor:
    """`zoo serve --workers N`: one spawned worker process per listening socket, each given only its own.

    A worker that dies is replaced: at once when it had served, after a back-off (RESTART_DELAYS, doubling)
    while the workers on its socket die before they serve; one that fails to start as uvicorn reports it
    (STARTUP_FAILURE: the app or its model is broken) stops the server. SIGTERM / SIGINT close the
    supervisor's copies of the sockets at once (a socket whose worker is gone then refuses new connections
    instead of queueing them where no one accepts), send SIGTERM to every worker (each drains like one
    `zoo serve` process: its socket stays open for the drain delay), wait up to the drain delay + the
    graceful timeout (+ STOP_MARGIN) and kill what is left. SIGHUP replaces each worker,
    one at a time, once its replacement serves (READY_TIMEOUT)."""

    def __init__(self, options: dict, settings: dict, sockets: list[socket.socket]) -> None:
        self.options, self.settings, self.sockets = options, settings, sockets
        self.workers: list[Worker | None] = [None] * len(sockets)
        self.retiring: list[Worker] = []  # replaced on SIGHUP, draining
        self.failures = [0] * len(sockets)  # workers in a row that died before they served, per socket
        self.restart_at: dict[int, float] = {}  # socket index -> when its next worker starts
        self.signals: list[int] = []
        self.stopping = False
        self.failure: str | None = None  # why a worker failed to start
        self.wake, self.wake_up = os.pipe()  # the signal handler wakes the main loop through it
        for fd in (self.wake, self.wake_up):
            os.set_blocking(fd, False)

    def run(self) -> str | None:
        """Serve until SIGTERM / SIGINT (None) or a worker's startup failure (the line that says why)."""
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
        previous = {sig: signal.signal(sig, self.on_signal) for sig in handled}
        log.info("Started parent process [%d]", os.getpid())
        try:
            self.workers = [self.start(sock) for sock in self.sockets]
            while not self.stopping:
                self.wait([w.process.sentinel for w in self.live()])
                self.handle_signals()
                if not self.stopping:
                    self.replace_dead()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self.wake)
            os.close(self.wake_up)
        return self.failure

    def start(self, sock: socket.socket) -> Worker:
        return Worker(self.options, self.settings, sock)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_up, b"\0")

    def wait(self, events: list, timeout: float | None = None) -> None:
        """Wait for a signal, one of `events` (process sentinels, connections), the next restart or `timeout`."""
        from multiprocessing.connection import wait

        if self.restart_at:
            soonest = max(0.0, min(self.restart_at.values()) - time.monotonic())
            timeout = soonest if timeout is None else min(timeout, soonest)
        wait([self.wake, *events], timeout)
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake, 512)
        self.retiring = [w for w in self.retiring if w.process.exitcode is None]

    def handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            name = signal.Signals(signum).name
            if signum in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
                log.info("Received %s: every worker drains, then the server stops", name)
                self.stopping = True
                for sock in self.sockets:
                    sock.close()
                for worker in self.live():
                    worker.terminate()
            elif signum == signal.SIGHUP and not self.stopping:
                log.info("Received SIGHUP: replacing each worker once its replacement serves")
                self.replace_all()
            elif signum in (signal.SIGTTIN, signal.SIGTTOU):
                log.info("%s ignored: the number of workers is fixed by --workers", name)

    def live(self) -> list[Worker]:
        return [w for w in [*self.workers, *self.retiring] if w is not None]

    def replace_dead(self) -> None:
        """Start a worker in place of each that died, once its back-off has passed."""
        from uvicorn.config import STARTUP_FAILURE

        now = time.monotonic()
        for i, worker in enumerate(self.workers):
            if worker is None or worker.process.exitcode is None:
                continue
            self.workers[i] = None
            if worker.process.exitcode == STARTUP_FAILURE:  # it would fail the same way again
                worker.has_served()  # (reads what it said)
                self.failure = worker.failure or "a worker process failed to start (the log above says why)"
                log.error("worker process [%d] failed to start; stopping", worker.pid)
                self.stopping = True
                return
            self.failures[i] = 0 if worker.has_served() else self.failures[i] + 1
            first, most = RESTART_DELAYS
            delay = min(most, first * 2 ** (self.failures[i] - 1)) if self.failures[i] else 0.0
            log.warning(
                "worker process [%d] died (exit code %s); starting another%s",
                worker.pid,
                worker.process.exitcode,
                f" in {delay:.1f} s" if delay else "",
            )
            self.restart_at[i] = now + delay
        for i, at in list(self.restart_at.items()):
            if at <= now:
                del self.restart_at[i]
                self.workers[i] = self.start(self.sockets[i])

    def replace_all(self) -> None:
        """SIGHUP: replace each worker once its replacement serves; give up if one does not in time."""
        for i, old in enumerate(self.workers):
            self.restart_at.pop(i, None)  # (a dead one's replacement starts now)
            new = self.start(self.sockets[i])
            deadline = time.monotonic() + READY_TIMEOUT
            while not (
                new.has_served() or self.signals or new.process.exitcode is not None or time.monotonic() > deadline
            ):
                events = [new.process.sentinel, *([] if new.ready.closed else [new.ready])]
                self.wait(events, timeout=max(0.0, deadline - time.monotonic()))
            if not new.has_served():  # (a signal came first, or it died, or it took too long)
                if not self.signals:
                    log.error("worker process [%d] did not start serving; keeping the others", new.pid)
                new.terminate()
                self.retiring.append(new)
                return
            if old is not None:
                old.terminate()
                self.retiring.append(old)
            self.workers[i] = new

    def stop(self) -> None:
        """Every worker has had SIGTERM: wait for them to drain, then kill what is left."""
        timeout = self.options.get("timeout_graceful_shutdown")
        drain = float(self.settings.get("drain_delay") or 0.0)
        deadline = None if timeout is None else time.monotonic() + drain + timeout + STOP_MARGIN
        for sock in self.sockets:
            sock.close()
        for worker in self.live():
            worker.terminate()
            worker.process.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                log.warning("worker process [%d] did not stop in time; killing it", worker.pid)
                worker.process.kill()
                worker.process.join()
        log.info("Stopping parent process [%d]", os.getpid())


def supervise(options: dict, settings: dict, sockets: list[socket.socket]) -> str | None:
    """Run a worker process per socket (`Supervisor`) with uvicorn.Config's `options` on the model
    `settings` name, until SIGTERM / SIGINT (None: every worker drained) or a worker's startup failure
    (the line that says why)."""
    return Supervisor(options, settings, sockets).run()
