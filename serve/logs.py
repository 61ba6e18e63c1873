"""The server's log lines, uvicorn's and ours, the same in every process: `log_config(format, level)` is the
logging configuration uvicorn.Config applies (its `log_config`), so each worker sets it up again.

text: uvicorn's own lines as uvicorn writes them, ours as `TEXT_FORMAT`. json: one JSON object per line,
for log collectors: time (ISO 8601, UTC), level, logger, message, and for a request's line (serve.app's
edge) method, path, status and duration_ms.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
REQUEST_FIELDS = ("method", "path", "status", "duration_ms")  # a request line's own fields (its `extra`)


class JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in REQUEST_FIELDS:
            if hasattr(record, field):
                line[field] = getattr(record, field)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_config(fmt: str, level: str) -> dict[str, Any]:
    """logging.config.dictConfig's configuration for `fmt` (serve.options.LOG_FORMATS) at `level`."""
    handler = {"class": "logging.StreamHandler", "formatter": "zoo", "stream": "ext://sys.stderr"}
    if fmt == "json":
        return {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"zoo": {"()": JsonFormatter}},
            "handlers": {"zoo": handler},
            "root": {"handlers": ["zoo"], "level": level.upper()},
            # uvicorn's loggers: no handlers of their own, so their records reach the root's
            "loggers": {name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.access")},
        }
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["zoo"] = {"format": TEXT_FORMAT}
    config["handlers"]["zoo"] = handler
    config["root"] = {"handlers": ["zoo"], "level": level.upper()}
    return config
