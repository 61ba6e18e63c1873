"""What one server process runs: settings (plain JSON-able values) -> a loaded model -> the app.

`zoo serve` calls `build(settings)` itself for one process. With `--workers N` it puts the settings in
the environment and hands uvicorn's process supervisor the factory `serve.worker:app_from_environment`:
every worker is a fresh (spawned) interpreter that loads its own copy of the model and runs its own
batcher and event loop on the one listening socket the parent bound, so HTTP parsing, image decoding
and the model run in parallel on several cores. The supervisor restarts a worker that dies and, on
SIGTERM, stops each one the way a single server stops (requests in flight finish).
"""

from __future__ import annotations

import json
import logging
import os

SETTINGS_ENV = "ZOO_SERVE_SETTINGS"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# create_app's keyword arguments that `settings` may carry
APP_OPTIONS = ("max_batch_size", "max_delay_ms", "max_body_mb", "max_image_pixels", "api_key", "model_name",
               "max_queue")


def load_predictor(settings: dict):
    """The Predictor the settings name (infer.load's errors pass through)."""
    import infer

    return infer.load(settings["model"], backend=settings.get("backend", "auto"), threads=settings.get("threads"),
                      spin_wait=False)  # between batches the CPU belongs to the event loop


def build(settings: dict, predictor=None):
    """The app for `settings`: {"model": path, "backend", "threads", and create_app's options}."""
    from .app import create_app

    if predictor is None:
        predictor = load_predictor(settings)
    return create_app(predictor, **{k: settings[k] for k in APP_OPTIONS if settings.get(k) is not None})


def app_from_environment():
    """uvicorn's app factory in each worker process: the app for the settings in $ZOO_SERVE_SETTINGS."""
    settings = json.loads(os.environ[SETTINGS_ENV])
    logging.basicConfig(level=settings.get("log_level", "info").upper(),
                        format=LOG_FORMAT.replace("%(name)s", "%(name)s[%(process)d]"))
    return build(settings)
