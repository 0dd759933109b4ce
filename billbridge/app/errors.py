"""The one place where the command line turns a person's mistake into one line of error.

A wrong or missing setting, a store that cannot be opened, a port in use: each ends in
``error: <what and where>`` on stderr with exit code 1, never a traceback. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from billbridge.errors import UserError
from billbridge.settings import settings_problem

err = Console(stderr=True)


def one_line(exc: BaseException) -> str | None:
    """What a person reads for ``exc``, or None when it is not theirs to fix."""
    if isinstance(exc, UserError):
        return " ".join(str(exc).split())
    if isinstance(exc, ValidationError):
        return settings_problem(exc)
    return None


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on one line (never wrapped, no markup read in it) and exit 1."""
    err.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True)
    raise typer.Exit(1)


class Commands(TyperGroup):
    """The ``billbridge`` command group: every command runs inside :meth:`invoke`."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (UserError, ValidationError) as exc:
            message = one_line(exc)
            if message is None:
                raise
            fail(message)
