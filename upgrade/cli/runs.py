"""``python -m upgrade runs approve|rollback|pause|resume|abort|override-window ID``: an operator's decision on a run.

For every kind of run (rolling and blue-green), through the app's HTTP API
(``POST /api/upgrades/{id}/{decision}``): the app records who decided, when and why, and answers
with what the run allows now when it refuses. ``status ID`` shows the run.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from upgrade.cli.output import add_output_argument, print_data
from upgrade.cli.status import API_HELP, UpgradeApi, add_api_arguments, print_timeline

DECISIONS = {
    "pause": "park the run: its next step waits until resume",
    "resume": "continue a paused run",
    "abort": "end the run where it is, cleaning nothing up",
    "approve": "blue-green: commit now, deleting the blue pool (from the decision wait, or to end the final soak early)",
    "rollback": "blue-green: roll back to blue, deleting the green pool (any time before commit)",
    "override-window": "let the run go on outside its maintenance windows (needs --reason; recorded)",
}


def add_approve_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--override", action="store_true",
                         help="commit although validation failed (recorded as an override)")
    command.add_argument("--while-paused", action="store_true",
                         help="commit a paused run without resuming it first (recorded)")


def approve_flags(args: argparse.Namespace) -> dict:
    """The approve flags as the API's decision body has them (absent when not given)."""
    flags = {"override": getattr(args, "override", False), "whilePaused": getattr(args, "while_paused", False)}
    return {key: True for key, given in flags.items() if given}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("runs", help="decide on a run: approve, rollback, pause, resume, abort",
                                   description=__doc__.split("\n\n")[1] + " " + API_HELP)
    add_decision_commands(parser.add_subparsers(dest="decision", metavar="DECISION", required=True), DECISIONS)


def add_decision_commands(subparsers: argparse._SubParsersAction, decisions: Mapping[str, str]) -> None:
    """One subcommand per decision (its help text given), each calling ``run_decision``."""
    for decision, text in decisions.items():
        command = subparsers.add_parser(decision, help=text, description=f"{text}. {API_HELP}")
        command.add_argument("run_id", metavar="ID", help="the run id (python -m upgrade status lists them)")
        command.add_argument("--reason", default="", help="why (recorded with the decision)")
        if decision == "approve":
            add_approve_flags(command)
        add_output_argument(command)
        add_api_arguments(command)
        command.set_defaults(handler=run_decision, decision=decision)


def run_decision(args: argparse.Namespace) -> int:
    api = UpgradeApi.from_args(args)
    api.call("POST", f"/api/upgrades/{args.run_id}/{args.decision}", {"reason": args.reason, **approve_flags(args)})
    run = api.run(args.run_id)
    if not print_data(run, args.output):
        print_timeline(run, args.output)
    return 0
