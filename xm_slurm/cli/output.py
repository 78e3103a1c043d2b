"""Printing: rich tables on a terminal, aligned plain text otherwise, JSON for scripts, one-line errors.

Every text given to rich goes in as `rich.text.Text`, never as markup: user text such as a job named
`linefit [retry of 2978_3]` prints as written. Columns never break a word: each column is at least as wide
as its longest word (up to `MAX_WORD`); a longer cell is cut with an ellipsis (`Column.no_wrap`) or folded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

#: A word longer than this may still be folded (a path, a long id): the column would leave no room.
MAX_WORD = 28

#: Colours of job and work unit states (rich style names), by the state word.
STATE_STYLES: dict[str, str] = {
    "COMPLETED": "green",
    "RUNNING": "cyan",
    "PENDING": "yellow",
    "REQUEUED": "yellow",
    "SUSPENDED": "yellow",
    "FAILED": "bold red",
    "TIMEOUT": "red",
    "OUT_OF_MEMORY": "red",
    "NODE_FAIL": "red",
    "BOOT_FAIL": "red",
    "DEADLINE": "red",
    "PREEMPTED": "magenta",
    "CANCELLED": "magenta",
}


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column. `states`: colour its cells by state (`STATE_STYLES`); `no_wrap`: one line per cell,
    cut with an ellipsis at `max_width` (compact columns such as args); `max_width`: the widest it gets."""

    name: str
    states: bool = False
    no_wrap: bool = False
    max_width: int | None = None


def one_line(error: BaseException) -> str:
    """The error's message on one line (remote stderr often has several)."""
    parts = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " | ".join(parts) or type(error).__name__


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(sorted(str(v) for v in value)) or "-"
    return str(value)


def state_style(text: str) -> str | None:
    """The colour of a state cell (`CANCELLED by 0` is CANCELLED's, `failed` FAILED's), or None."""
    word = text.split(" ", 1)[0].upper()
    return STATE_STYLES.get(word)


def _longest_word(texts: Sequence[str]) -> int:
    return max((len(w) for t in texts for w in t.split()), default=1)


def fit_widths(columns: Sequence[Column], texts: list[list[str]], width: int) -> list[int]:
    """Each column's width for a terminal `width` wide: the natural widths while they fit; else the
    columns with the most room to spare give it up first, down to a floor that breaks no word (the longest
    word, up to MAX_WORD; a `no_wrap` column is cut with an ellipsis, down to its header or 6)."""
    natural, floor = [], []
    for i, column in enumerate(columns):
        values = [row[i] for row in texts]
        full = max([len(column.name), *(len(v) for v in values)])
        if column.max_width is not None:
            full = min(full, column.max_width)
        if column.no_wrap:
            low = max(len(column.name), 6)
        else:
            low = max(min(_longest_word(values), MAX_WORD), _longest_word([column.name]))
        natural.append(full)
        floor.append(min(full, low))
    budget = width - (3 * len(columns) - 1)  # rich's padding (1 each side) and one rule between columns
    widths = list(natural)
    excess = sum(widths) - budget
    while excess > 0:
        spare = [w - f for w, f in zip(widths, floor, strict=True)]
        i = max(range(len(widths)), key=spare.__getitem__)
        if spare[i] <= 0:
            break  # even the floors do not fit: rich folds what it must
        step = min(excess, max(1, spare[i] // 2))
        widths[i] -= step
        excess -= step
    return widths


def _rich_table(columns: Sequence[Column], texts: list[list[str]], title: str | None, width: int) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=None if title is None else Text(title),
        title_justify="left",
        show_edge=False,
        header_style="bold",
    )
    for column, size in zip(columns, fit_widths(columns, texts, width), strict=True):
        table.add_column(
            Text(column.name),
            overflow="ellipsis" if column.no_wrap else "fold",
            no_wrap=column.no_wrap,
            width=size,
        )
    for row in texts:
        table.add_row(
            *(
                Text(value, style=(state_style(value) or "") if column.states else "")
                for value, column in zip(row, columns, strict=True)
            )
        )
    return table


def print_table(
    columns: Sequence[str | Column],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """A rich table on a terminal (user text never read as markup; states coloured; no word broken);
    otherwise a header line and rows aligned with two spaces, no colour, nothing cut."""
    stream = sys.stdout if stream is None else stream
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    texts = [[cell(v) for v in row] for row in rows]
    if is_terminal(stream):
        from rich.console import Console

        console = Console(file=stream)
        console.print(_rich_table(cols, texts, title, console.width))
        return
    if title:
        print(title, file=stream)
    widths = [max([len(c.name), *(len(r[i]) for r in texts)]) for i, c in enumerate(cols)]
    for row in [[c.name.upper() for c in cols], *texts]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=stream)


def print_json(value: Any, stream: TextIO | None = None) -> None:
    stream = sys.stdout if stream is None else stream
    json.dump(value, stream, indent=2, default=str)
    stream.write("\n")


def warn(command: str, message: str) -> None:
    print(f"xm-slurm {command}: {message}", file=sys.stderr)


def confirm(question: str, *, assume_yes: bool, unattended: bool) -> bool:
    """Ask `question [y/N]` when stdin and stdout are terminals. `assume_yes` (--yes): True without asking.
    Nobody to ask (a script, a pipe): `unattended`, the command's choice (docs/cli.md says which)."""
    if assume_yes:
        return True
    if not (is_terminal(sys.stdin) and is_terminal(sys.stdout)):
        return unattended
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
