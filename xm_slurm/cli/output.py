"""Printing: rich tables on a terminal, aligned plain text otherwise, JSON for scripts, one-line errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO


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


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """A rich table on a terminal; otherwise a header line and rows aligned with two spaces, no colour."""
    stream = sys.stdout if stream is None else stream
    texts = [[cell(v) for v in row] for row in rows]
    if is_terminal(stream):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in texts:
            table.add_row(*row)
        Console(file=stream).print(table)
        return
    if title:
        print(title, file=stream)
    widths = [max([len(c), *(len(r[i]) for r in texts)]) for i, c in enumerate(columns)]
    for row in [[c.upper() for c in columns], *texts]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=stream)


def print_json(value: Any, stream: TextIO | None = None) -> None:
    stream = sys.stdout if stream is None else stream
    json.dump(value, stream, indent=2, default=str)
    stream.write("\n")


def warn(command: str, message: str) -> None:
    print(f"xm-slurm {command}: {message}", file=sys.stderr)
