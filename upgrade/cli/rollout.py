"""``python -m upgrade rollout start|list|show|approve|pause|resume|abort|skip``: staged rollouts.

Through the app's HTTP API (``/api/rollouts``), as every other caller: ``start PLAN`` posts a plan
(a JSON file, or ``-`` for stdin; see docs/rollouts.md), ``show ID`` prints its stages, groups and
clusters (``--watch`` keeps it up to date until the rollout stops moving: a live table redrawn in
place on a terminal; otherwise, as in a log, only what changed), the decisions record who decided.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from upgrade.cli.output import (
    Column,
    add_output_argument,
    cluster_name,
    console,
    print_data,
    print_lines,
    print_table,
    table_renderable,
)
from upgrade.cli.status import API_HELP, UpgradeApi, add_api_arguments
from upgrade.errors import InvalidInput, PermanentError

DECISIONS = {
    "approve": "let a stage that passed its health gate and waits for approval go on",
    "pause": "start nothing new (runs in flight finish)",
    "resume": "look again at a paused, halted or gate-blocked rollout",
    "abort": "end the rollout (runs in flight finish on their own)",
}
# The rollout's statuses in which it moves on its own; --watch stops on any other.
MOVING = ("running", "soaking", "gate-blocked")
# Looks in a row --watch lets fail (the app unreachable, or answering 429/5xx) before it gives up;
# any other refusal (400, 401, 403, 404) ends it at once.
WATCH_FAILURES = 3

STAGE_COLUMNS = (
    Column("stage", key=True), Column("group", drop=2), Column("cluster", key=True), Column("status", key=True),
    Column("runs", key=True), Column("reason", wide=True),
)
LIST_COLUMNS = (
    Column("id", key=True), Column("name", drop=2), Column("status", key=True), Column("stage", drop=1),
    Column("target", drop=1), Column("updated", drop=3), Column("reason", wide=True),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rollout", help="staged rollouts across clusters",
                                   description=__doc__.split("\n\n")[1] + " " + API_HELP)
    commands = parser.add_subparsers(dest="rollout_command", metavar="COMMAND", required=True)

    def command(name: str, text: str, handler) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=f"{text}. {API_HELP}")
        add_output_argument(sub)
        add_api_arguments(sub)
        sub.set_defaults(handler=handler)
        return sub

    command("start", "start a rollout from a plan", start).add_argument(
        "plan", metavar="PLAN", help="the plan as a JSON file, or - for stdin")
    command("list", "the newest rollouts", list_rollouts).add_argument("--limit", type=int, default=50)
    show_cmd = command("show", "a rollout's stages, groups and clusters", show)
    show_cmd.add_argument("rollout_id", metavar="ID")
    show_cmd.add_argument("--watch", type=float, nargs="?", const=5.0, default=None, metavar="SECONDS",
                          help="look again every SECONDS (default 5) until the rollout stops moving: a live "
                               "table on a terminal, else only the changes")
    for decision, text in DECISIONS.items():
        sub = command(decision, text, decide)
        sub.add_argument("rollout_id", metavar="ID")
        sub.add_argument("--reason", default="", help="why (recorded with the decision)")
    skip = command("skip", "take a pending, failed, held or done cluster out of the rollout", decide)
    skip.add_argument("rollout_id", metavar="ID")
    skip.add_argument("cluster", metavar="CLUSTER", help="the cluster's ARM id, or its name when unique")
    skip.add_argument("--reason", default="", help="why (recorded with the decision)")


def _read_plan(path: str) -> object:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise InvalidInput("command line", "PLAN", f"unreadable: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput("command line", "PLAN", f"not JSON: {exc}") from exc


def start(args: argparse.Namespace) -> int:
    rollout = UpgradeApi.from_args(args).call("POST", "/api/rollouts", _read_plan(args.plan))
    if not print_data(rollout, args.output):
        print_rollout(rollout, args.output)
    return 0


def list_rollouts(args: argparse.Namespace) -> int:
    rollouts = UpgradeApi.from_args(args).call("GET", f"/api/rollouts?limit={args.limit}")["rollouts"]
    if not print_data(rollouts, args.output):
        rows = [(r["id"], r.get("name") or "", r["status"], _stage_name(r), _target(r),
                 r["updatedAt"][:19], r.get("reason") or "") for r in rollouts]
        print_table(LIST_COLUMNS, rows, output=args.output)
    return 0


def show(args: argparse.Namespace) -> int:
    api = UpgradeApi.from_args(args)
    path = f"/api/rollouts/{args.rollout_id}"
    if args.watch is not None:
        watch(lambda: api.call("GET", path), every=max(1.0, args.watch), output=args.output)
        return 0
    rollout = api.call("GET", path)
    if not print_data(rollout, args.output):
        print_rollout(rollout, args.output)
    return 0


# ---- --watch -------------------------------------------------------------------------------------

Fetch = Callable[[], dict]


def watch(fetch: Fetch, *, every: float, output: str | None, out: Any = None,
          sleep: Callable[[float], None] | None = None) -> dict:
    """Look at the rollout every ``every`` seconds until it stops moving (any status but MOVING);
    returns its last state. On a terminal the table is redrawn in place (rich's Live) and printed
    whole once it stops; otherwise the first state is printed whole and then only what changed
    (for ``-o json|yaml``: the whole document again, once per change), so a log holds no
    repeated tables."""
    out, sleep = out or console(), sleep or time.sleep
    fetch = _tolerant(fetch, every, out, sleep)
    rollout = fetch()
    if output not in ("json", "yaml") and out.is_terminal:
        return _watch_live(fetch, rollout, every, output, out, sleep)
    _print_state(rollout, None, output, out)
    while rollout["status"] in MOVING:
        sleep(every)
        previous, rollout = rollout, fetch()
        _print_state(rollout, previous, output, out)
    return rollout


def _tolerant(fetch: Fetch, every: float, out: Any, sleep: Callable[[float], None]) -> Fetch:
    """``fetch`` that looks again, after ``every`` seconds, when a look fails for a reason that
    passes (the app unreachable, a 429 or 5xx answer), saying so on stderr's side of the console;
    the WATCH_FAILURES-th failure in a row, or any other error, is raised."""
    def look() -> dict:
        for failure in range(1, WATCH_FAILURES + 1):
            try:
                return fetch()
            except PermanentError as exc:
                # the plain PermanentError of an unreachable app or a 429/5xx answer, not a refusal
                passing = type(exc) is PermanentError and (exc.status is None or exc.status == 429 or exc.status >= 500)
                if not passing or failure == WATCH_FAILURES:
                    raise
                out.print(f"look {failure} of {WATCH_FAILURES} failed: {exc}; looking again in {every:g} s",
                          highlight=False, markup=False)
                sleep(every)
        raise AssertionError("unreachable")
    return look


def _watch_live(fetch: Fetch, rollout: dict, every: float, output: str | None, out: Any,
                sleep: Callable[[float], None]) -> dict:
    from rich.live import Live

    # transient: the live view may be cut to the terminal's height; the last state is printed whole,
    # also when the watch is stopped (Ctrl-C) or a look fails, so the screen is not left empty
    try:
        with Live(rollout_renderable(rollout, output, out.width), console=out, auto_refresh=False,
                  transient=True) as live:
            while rollout["status"] in MOVING:
                sleep(every)
                rollout = fetch()
                live.update(rollout_renderable(rollout, output, out.width), refresh=True)
    finally:
        print_rollout(rollout, output, out=out)
    return rollout


def _print_state(rollout: dict, previous: dict | None, output: str | None, out: Any) -> None:
    if previous is not None and _state(previous) == _state(rollout):
        return
    if output == "json":
        out.file.write(json.dumps(rollout, default=str) + "\n")  # one document per line, per change
    elif output == "yaml":
        out.file.write("---\n")
        print_data(rollout, output, out.file)
    elif previous is None:
        print_rollout(rollout, output, out=out)
    else:
        print_lines(rollout_changes(previous, rollout, output), out=out)
    out.file.flush()


def _state(rollout: dict) -> tuple:
    """What --watch reports a change of: the heading and every cluster's row (not updatedAt, which
    each look of the app's tick moves)."""
    return tuple(_heading(rollout)), tuple(_rows(rollout, "wide"))


def rollout_changes(previous: dict, current: dict, output: str | None = None) -> list[str]:
    """What changed between two looks at a rollout, one line each, stamped with its update time:
    the heading's lines that differ, then each cluster whose row differs."""
    at = (current.get("updatedAt") or "")[11:19]
    before_heading = set(_heading(previous))
    lines = [f"{at}  {line}" for line in _heading(current) if line not in before_heading]
    before = {row[2]: row for row in _rows(previous, "wide")}
    for row in _rows(current, "wide"):
        if before.get(row[2]) != row:
            stage, group, cluster, status, runs, reason = row
            shown = cluster if output == "wide" else cluster_name(cluster)
            old = before.get(cluster, (None,) * 6)[3]
            moved = f"{old} -> {status}" if old and old != status else status
            lines.append(f"{at}  {stage}/{group}/{shown}: {moved}" + (f"  runs {runs}" if runs else "")
                         + (f"  {reason}" if reason else ""))
    return lines


def decide(args: argparse.Namespace) -> int:
    api = UpgradeApi.from_args(args)
    body: dict = {"reason": args.reason}
    decision = args.rollout_command
    if decision == "skip":
        body["cluster"] = _cluster_id(api.call("GET", f"/api/rollouts/{args.rollout_id}"), args.cluster)
    rollout = api.call("POST", f"/api/rollouts/{args.rollout_id}/{decision}", body)
    if not print_data(rollout, args.output):
        print_rollout(rollout, args.output)
    return 0


def _cluster_id(rollout: dict, given: str) -> str:
    """The ARM id ``given`` names: itself, or the one cluster of the rollout with that name."""
    if given.startswith("/"):
        return given
    ids = [c["cluster"] for s in rollout["stages"] for g in s["groups"] for c in g["clusters"]]
    named = [c for c in ids if cluster_name(c).lower() == given.lower()]
    if len(named) != 1:
        raise InvalidInput("command line", "CLUSTER", f"{given!r} names {len(named)} clusters of the rollout; "
                                                      "give the ARM id")
    return named[0]


def _stage_name(rollout: dict) -> str:
    stages = rollout.get("stages") or []
    index = rollout.get("stage")
    return stages[index]["name"] if isinstance(index, int) and 0 <= index < len(stages) else ""


def _target(rollout: dict) -> str:
    """The rollout's one target: a version, or ``nodeImage`` with the image pinned per family."""
    images = sorted((rollout.get("nodeImages") or {}).values())
    return " ".join([rollout.get("targetVersion") or "?", *images])


def _heading(rollout: dict) -> list[str]:
    lines = [f"{rollout['id']}  rollout {rollout.get('name') or ''} -> {_target(rollout)}",
             f"status {rollout['status']}  stage {_stage_name(rollout)}"]
    if rollout.get("reason"):
        lines.append(f"reason: {rollout['reason']}")
    return lines


def _rows(rollout: dict, output: str | None) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for stage in rollout["stages"]:
        for group in stage["groups"]:
            for cluster in group["clusters"]:
                runs = " ".join(f"{pool}={run}" for pool, run in sorted((cluster.get("runs") or {}).items()))
                shown = cluster["cluster"] if output == "wide" else cluster_name(cluster["cluster"])
                rows.append((stage["name"], group["name"], shown, cluster.get("status") or "", runs,
                             cluster.get("reason") or ""))
    return rows


def print_rollout(rollout: dict, output: str | None = None, out: Any = None) -> None:
    """The heading, then one row per cluster: its stage, group, status and pool runs."""
    print_lines(_heading(rollout), out=out)
    print_table(STAGE_COLUMNS, _rows(rollout, output), output=output, title="stages", out=out)


def rollout_renderable(rollout: dict, output: str | None, width: int) -> Any:
    """What ``print_rollout`` prints on a terminal, as one rich renderable (for the live table)."""
    from rich.console import Group
    from rich.text import Text

    return Group(*(Text(line) for line in _heading(rollout)),
                 table_renderable(STAGE_COLUMNS, _rows(rollout, output), width=width, output=output, title="stages"))
