"""The `zoo` command: one click group, one module per subcommand under zoo/commands/.

Subcommands are imported only when they run (or when `--help` lists them, which imports their module
but not torch), so `zoo --help` answers in well under a second.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import threading

import click

from . import __version__
from .errors import UserError

# name -> "module:attribute"; each module keeps its heavy imports inside the command function.
COMMANDS = {
    "models": "zoo.commands.models:models",
    "summary": "zoo.commands.summary:summary",
    "train": "zoo.commands.train:train",
    "evaluate": "zoo.commands.evaluate:evaluate",
    "augment-preview": "zoo.commands.augment_preview:augment_preview",
    "features": "zoo.commands.features:features",
    "export": "zoo.commands.export:export",
    "classify": "zoo.commands.classify:classify",
    "serve": "zoo.commands.serve:serve",
    "bench": "zoo.commands.bench:bench",
    "visualize": "zoo.commands.visualize:visualize",
    "kernels": "zoo.commands.kernels:kernels",
}


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        """A full disk, wherever a command meets it, is one line naming the file (stdout where it has no
        name: `zoo classify ... > /dev/full`)."""
        threading.excepthook = _quiet_when_full  # a writer's thread meets it too; the line below says it once
        try:
            return super().invoke(ctx)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            if e.filename is None:
                _silence_stdout()  # the interpreter's last flush of stdout would fail again, with a traceback
            raise UserError(f"{e.filename or 'stdout'}: no space left on device") from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            import difflib

            close = difflib.get_close_matches(args[0], list(COMMANDS), n=3) if args else []
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise click.UsageError(f"No such command {args[0]!r}.{hint} See `zoo --help`.") from None


def _quiet_when_full(args: threading.ExceptHookArgs) -> None:
    """A thread that died of a full disk (TensorBoard's event writer, say) prints nothing: the command's
    own error says it in one line. Anything else is printed as Python prints it."""
    if not (isinstance(args.exc_value, OSError) and args.exc_value.errno == errno.ENOSPC):
        threading.__excepthook__(args)


def _silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null (stdout's unwritable buffer then flushes there)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="zoo (cnnzoo)")
def main() -> None:
    """cnnzoo: train, export, optimize and serve LeNet-5, AlexNet, ZFNet, VGG, GoogLeNet and ResNet."""
