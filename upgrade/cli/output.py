"""How the CLI prints: columns a person reads, or the API's data as JSON or YAML (``-o``).

``-o`` (default) prints columns; ``-o wide`` adds the columns marked ``wide``; ``-o json|yaml``
prints the data itself. Ids, node and pod names (columns marked ``key``) are never cut or wrapped,
so what ``status ID`` needs can always be copied:

- on a terminal, a table as wide as the terminal: other columns wrap, and when even that does not
  fit, the least important ones are dropped (kubectl's way; ``-o wide`` or a wider terminal shows
  them). When the key columns alone are wider than the terminal, the line is left for the terminal
  to wrap rather than cutting a name;
- when piped, plain space-aligned columns with nothing cut, for ``grep`` and ``awk``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

OUTPUT_FORMATS = ("wide", "json", "yaml")
GAP = 3  # spaces between columns, as kubectl prints them
MIN_WRAPPED_WIDTH = 10  # a wrapping column narrower than this is unreadable: drop it instead


@dataclass(frozen=True)
class Column:
    """A table column. ``key``: an id or name someone copies (or a fact no row makes sense without),
    never cut, wrapped or dropped. ``wide``: only with -o wide.
    ``drop``: the higher, the sooner the column is dropped on a narrow terminal (keys never are)."""

    header: str
    key: bool = False
    wide: bool = False
    drop: int = 0


def cluster_name(arm_id: str) -> str:
    """The cluster's name, the last segment of its ARM id: how tables show a cluster."""
    return arm_id.rstrip("/").rsplit("/", 1)[-1]


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default=None,
                        help="wide: every column; json or yaml: the data (default: columns)")
    # Kept so scripts written for the earlier flag still work; -o json is the documented spelling.
    parser.add_argument("--json", dest="output", action="store_const", const="json", help=argparse.SUPPRESS)


def print_data(data: Any, output: str | None, file: Any = None) -> bool:
    """Print ``data`` as JSON or YAML when ``output`` asks for it; False when a table is wanted."""
    file = file or sys.stdout
    if output == "json":
        json.dump(data, file, indent=2, default=str)
        file.write("\n")
        return True
    if output == "yaml":
        import yaml

        file.write(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False))
        return True
    return False


def console() -> Any:
    from rich.console import Console

    return Console()


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[object]], *, output: str | None = None,
                title: str = "", out: Any = None) -> None:
    """Print ``rows`` under ``columns`` (see the module's docstring for the rules)."""
    out = out or console()
    shown, cells = _cells(columns, rows, output)
    if not out.is_terminal:
        if title:
            out.print(title, markup=False, highlight=False, soft_wrap=True)
        _print_plain([columns[i] for i in shown], [[row[i] for i in shown] for row in cells], out)
        return
    shown, natural = _fitted(columns, shown, cells, out.width)
    _print_rich([columns[i] for i in shown], [[row[i] for i in shown] for row in cells], natural, title, out)


def table_renderable(columns: Sequence[Column], rows: Sequence[Sequence[object]], *, width: int,
                     output: str | None = None, title: str = "") -> Any:
    """The terminal form of ``print_table`` as a rich renderable (for a live display that redraws
    it in place), fitted to ``width`` by the same rules."""
    shown, cells = _cells(columns, rows, output)
    shown, natural = _fitted(columns, shown, cells, width)
    return _rich_table([columns[i] for i in shown], [[row[i] for i in shown] for row in cells], natural, title)


def _cells(columns: Sequence[Column], rows: Sequence[Sequence[object]],
           output: str | None) -> tuple[list[int], list[list[str]]]:
    shown = [i for i, c in enumerate(columns) if output == "wide" or not c.wide]
    return shown, [["" if row[i] is None else str(row[i]) for i in range(len(columns))] for row in rows]


def _fitted(columns: Sequence[Column], shown: list[int], cells: Sequence[Sequence[str]],
            width: int) -> tuple[list[int], list[int]]:
    """The columns that fit ``width`` and their natural widths."""
    natural = {i: max([len(columns[i].header)] + [_longest_line(row[i]) for row in cells]) for i in shown}
    shown = _fitting(columns, shown, natural, width)
    return shown, [natural[i] for i in shown]


def _longest_line(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _needed_width(columns: Sequence[Column], shown: Sequence[int], natural: dict[int, int]) -> int:
    widths = [natural[i] if columns[i].key else min(natural[i], MIN_WRAPPED_WIDTH) for i in shown]
    return sum(widths) + GAP * (len(widths) - 1)


def _fitting(columns: Sequence[Column], shown: list[int], natural: dict[int, int], width: int) -> list[int]:
    """Drop non-key columns (highest ``drop`` first, then rightmost) until the table fits ``width``."""
    shown = list(shown)
    droppable = sorted((i for i in shown if not columns[i].key), key=lambda i: (columns[i].drop, i))
    while droppable and _needed_width(columns, shown, natural) > width:
        shown.remove(droppable.pop())
    return shown


def _print_plain(columns: Sequence[Column], rows: Sequence[Sequence[str]], out: Any) -> None:
    # One line per row: a value's own line breaks become spaces, so a row stays one line.
    table = [[c.header.upper() for c in columns]] + [[" ".join(v.split()) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        text = (" " * GAP).join(value.ljust(width) for value, width in zip(line, widths, strict=True))
        out.print(text.rstrip(), markup=False, highlight=False, soft_wrap=True)


def _rich_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], natural: Sequence[int], title: str) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, padding=(0, GAP, 0, 0), title=title or None, title_justify="left",
                  header_style="bold", show_edge=False)
    for column, width in zip(columns, natural, strict=True):
        if column.key:
            table.add_column(column.header.upper(), no_wrap=True, min_width=width, overflow="ignore")
        else:
            table.add_column(column.header.upper(), overflow="fold", min_width=min(width, MIN_WRAPPED_WIDTH))
    for row in rows:
        # Text cells: names and reasons come from clusters and operators, never read as rich markup.
        table.add_row(*map(Text, row))
    return table


def _print_rich(columns: Sequence[Column], rows: Sequence[Sequence[str]], natural: Sequence[int], title: str,
                out: Any) -> None:
    table = _rich_table(columns, rows, natural, title)
    needed = sum(natural[i] for i, c in enumerate(columns) if c.key) + sum(
        min(natural[i], MIN_WRAPPED_WIDTH) for i, c in enumerate(columns) if not c.key) + GAP * len(columns)
    if needed > out.width:
        # Even the key columns do not fit: render wider and let the terminal wrap the line.
        from rich.console import Console

        Console(file=out.file, width=needed, force_terminal=True, color_system=out.color_system).print(table)
        return
    out.print(table)


def print_lines(lines: Iterable[str], out: Any = None) -> None:
    """Print free text (a run's header): never markup, never cut, wrapped by the terminal."""
    out = out or console()
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
