"""The one user-error type of the `zoo` command: printed as one `Error: ...` line, never a traceback.

Imports nothing of ours, so any command module (and the click group in zoo.cli) imports it at module
level without a cycle.
"""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """A user mistake: printed as one `Error: ...` line (no usage block, no traceback)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
