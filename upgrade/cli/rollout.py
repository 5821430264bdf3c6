"""``python -m upgrade rollout start|list|show|approve|pause|resume|abort|skip``: staged rollouts.

Through the app's HTTP API (``/api/rollouts``), as every other caller: ``start PLAN`` posts a plan
(a JSON file, or ``-`` for stdin; see docs/rollouts.md), ``show ID`` prints its stages, groups and
clusters (``--watch`` reprints it until the rollout stops moving), the decisions record who decided.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from upgrade.cli.output import Column, add_output_argument, cluster_name, print_data, print_lines, print_table
from upgrade.cli.status import API_HELP, UpgradeApi, add_api_arguments
from upgrade.errors import InvalidInput

DECISIONS = {
    "approve": "let a stage that passed its health gate and waits for approval go on",
    "pause": "start nothing new (runs in flight finish)",
    "resume": "look again at a paused, halted or gate-blocked rollout",
    "abort": "end the rollout (runs in flight finish on their own)",
}
# The rollout's statuses in which it moves on its own; --watch stops on any other.
MOVING = ("running", "soaking", "gate-blocked")

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
                          help="reprint every SECONDS (default 5) until the rollout stops moving")
    for decision, text in DECISIONS.items():
        sub = command(decision, text, decide)
        sub.add_argument("rollout_id", metavar="ID")
        sub.add_argument("--reason", default="", help="why (recorded with the decision)")
    skip = command("skip", "take a pending, failed or done cluster out of the rollout", decide)
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
        rows = [(r["id"], r.get("name") or "", r["status"], _stage_name(r), r.get("targetVersion") or "",
                 r["updatedAt"][:19], r.get("reason") or "") for r in rollouts]
        print_table(LIST_COLUMNS, rows, output=args.output)
    return 0


def show(args: argparse.Namespace) -> int:
    api = UpgradeApi.from_args(args)
    while True:
        rollout = api.call("GET", f"/api/rollouts/{args.rollout_id}")
        if print_data(rollout, args.output):
            return 0
        print_rollout(rollout, args.output)
        if args.watch is None or rollout["status"] not in MOVING:
            return 0
        time.sleep(max(1.0, args.watch))
        print()


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


def print_rollout(rollout: dict, output: str | None = None) -> None:
    """The heading, then one row per cluster: its stage, group, status and pool runs."""
    lines = [f"{rollout['id']}  rollout {rollout.get('name') or ''} -> {rollout.get('targetVersion') or '?'}",
             f"status {rollout['status']}  stage {_stage_name(rollout)}"]
    if rollout.get("reason"):
        lines.append(f"reason: {rollout['reason']}")
    print_lines(lines)
    rows = []
    for stage in rollout["stages"]:
        for group in stage["groups"]:
            for cluster in group["clusters"]:
                runs = " ".join(f"{pool}={run}" for pool, run in sorted((cluster.get("runs") or {}).items()))
                shown = cluster["cluster"] if output == "wide" else cluster_name(cluster["cluster"])
                rows.append((stage["name"], group["name"], shown, cluster.get("status") or "", runs,
                             cluster.get("reason") or ""))
    print_table(STAGE_COLUMNS, rows, output=output, title="stages")
