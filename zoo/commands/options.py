"""The click options several commands share, defined once.

    @options.device()                  # --device auto|cpu|cuda|cuda:N, checked by zoo.devices' own rule
    @options.loader_workers(2)         # --workers: DataLoader processes
    @threads.option()                  # --threads (zoo.threads, beside the policy it sets)

    option = options.with_defaults(TrainConfig())
    @option("--epochs", type=int)      # default TrainConfig().epochs, shown in --help

Only click and constants here: `zoo --help` imports every command module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import click

from zoo import devices
from zoo.errors import UserError

if TYPE_CHECKING:
    from click.decorators import FC

DEVICE_HELP = "Where the model runs: auto (a CUDA GPU where torch sees one, else the CPU), cpu, cuda or cuda:N."
LOADER_WORKERS_HELP = "DataLoader processes decoding image folders."


class Device(click.ParamType):
    """A device name as zoo.devices.check takes it: one of `choices` (devices.NAMES) or cuda:N. Whether
    the device is here is said later, by devices.resolve, where the command runs."""

    name = "device"
    choices = devices.NAMES

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(self.choices) + "|cuda:N]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return devices.check(value)
        except devices.DeviceError as e:
            raise UserError(str(e), exit_code=2) from None

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
        from click.shell_completion import CompletionItem

        return [CompletionItem(c) for c in self.choices if c.startswith(incomplete)]


def device(default: str = "auto", help: str = DEVICE_HELP) -> Callable[[FC], FC]:
    """`--device NAME` (Device; a wrong name is one line, exit 2)."""
    return click.option("--device", type=Device(), default=default, show_default=True, help=help)


def loader_workers(default: int) -> Callable[[FC], FC]:
    """`--workers N` (N >= 0): the DataLoader processes of the commands that read image folders."""
    return click.option(
        "--workers", type=click.IntRange(0), default=default, show_default=True, help=LOADER_WORKERS_HELP
    )


def with_defaults(defaults: object) -> Callable[..., Callable[[FC], FC]]:
    """An option factory like click.option whose default is `defaults`' attribute of the option's name
    (a library's dataclass instance: TrainConfig(), serve.options.DEFAULTS), shown in --help (unless
    show_default says otherwise): so the default is written once, where the library keeps it."""

    def option(*decls: str, **kwargs: Any) -> Callable[[FC], FC]:
        flag = next(d for d in decls if d.startswith("--")).split("/")[0]
        name = next((d for d in decls if d.isidentifier()), flag[2:].replace("-", "_"))
        kwargs.setdefault("show_default", True)
        return click.option(*decls, default=getattr(defaults, name), **kwargs)

    return option
