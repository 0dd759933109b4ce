"""The command line's tables and the console they print on: a number or a ref is never cut.

Rich fits a table to the console (80 columns when the output is not a terminal) by cutting cells
with an ellipsis: ``125,0…`` for an MRR, ``hs-3000…`` for a partner ref, which then cannot be pasted
into the next command. Here a column is never narrower than its longest word (cells still wrap at
spaces), and the console does not crop a table that is then wider than itself: a long line that the
terminal wraps is better than a wrong number or ref.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions
from rich.table import Table as RichTable

UNBOUNDED = 100_000


class Table(RichTable):
    """A rich table that never truncates a word (money, refs, dates) to fit the console."""

    def _calculate_column_widths(self, console: Console, options: ConsoleOptions) -> list[int]:
        widths = super()._calculate_column_widths(console, options)
        unbounded = options.update_width(UNBOUNDED)
        floors = [self._measure_column(console, unbounded, column).minimum for column in self.columns]
        return [max(width, floor) for width, floor in zip(widths, floors, strict=True)]


def stdout_console() -> Console:
    """The console a command prints its tables and lines on: soft-wrapped, so not cropped at its width."""
    return Console(soft_wrap=True)
