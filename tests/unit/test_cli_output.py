"""How the CLI prints tables: ids, node and pod names are never cut, whatever the terminal's width;
less important columns wrap or are dropped (kubectl's way); piped output is plain columns."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from upgrade.cli.output import Column, print_table

COLUMNS = (Column("id", key=True), Column("status"), Column("kind", drop=2), Column("node", key=True),
           Column("reason", drop=1), Column("detail", wide=True))
RUN_ID = "rolling-nodepool1-3f2a9c1b7d4e"
NODE = "aks-nodepool1-12345678-vmss000000"
ROWS = [(RUN_ID, "succeeded", "rolling", NODE, "the pool's last operation ended Succeeded " * 3, "wide only")]


def rendered(width: int, *, terminal: bool, output: str | None = None) -> str:
    out = io.StringIO()
    print_table(COLUMNS, ROWS, output=output,
                out=Console(file=out, width=width, force_terminal=terminal, color_system=None))
    return out.getvalue()


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "piped"])
@pytest.mark.parametrize("width", [20, 40, 60, 80, 200])
def test_ids_and_node_names_appear_whole_at_any_width(width, terminal):
    text = rendered(width, terminal=terminal)
    assert RUN_ID in text and NODE in text
    assert "…" not in text


@pytest.mark.parametrize(("width", "headers"), [
    # (terminal width, the columns shown): optional ones go first by `drop`, keys stay
    (200, ["ID", "STATUS", "KIND", "NODE", "REASON"]),
    (100, ["ID", "STATUS", "NODE", "REASON"]),
    (80, ["ID", "STATUS", "NODE"]),
    (60, ["ID", "NODE"]),
])
def test_a_narrow_terminal_drops_the_least_important_columns(width, headers):
    first_line = rendered(width, terminal=True).splitlines()[0]
    assert first_line.split() == headers


def test_wide_adds_its_columns_and_piped_output_is_one_plain_line_per_row():
    piped = rendered(60, terminal=False, output="wide").splitlines()
    assert piped[0].split() == ["ID", "STATUS", "KIND", "NODE", "REASON", "DETAIL"]
    assert len(piped) == 2 and piped[1].startswith(RUN_ID + " ") and piped[1].endswith("wide only")
