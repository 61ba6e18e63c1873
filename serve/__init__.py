"""cnnzoo: serve (see DESIGN.md). `serve.run(model, **options)` serves a model until SIGTERM / SIGINT."""

from .runner import ServeError, run

__all__ = ["ServeError", "run"]
