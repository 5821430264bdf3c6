"""``python -m upgrade bluegreen start|approve|rollback|pause|resume|abort``: blue-green pool upgrades.

``start`` asks the app to upgrade a pool blue-green; the decisions steer a run that is in flight.
Every command goes through the app's HTTP API, so the run record, the decision log (who, when,
why) and the alerts are the app's, whichever way an operator acted.
"""

from __future__ import annotations

import argparse
import json

from upgrade.cli.runs import add_decision_commands
from upgrade.cli.status import API_HELP, UpgradeApi, add_api_arguments
from upgrade.errors import InvalidInput

DECISION_HELP = {
    "approve": "commit now: delete the blue pool (from the decision wait, or to end the final soak early)",
    "rollback": "roll back: uncordon blue, drain green, delete the green pool (any time before commit)",
    "pause": "park the run: its next step waits until resume",
    "resume": "continue a paused run",
    "abort": "end the run where it is, cleaning nothing up",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bluegreen", help="start and steer blue-green pool upgrades",
                                   description=__doc__.split("\n\n")[1] + " " + API_HELP)
    commands = parser.add_subparsers(dest="bluegreen_command", metavar="ACTION", required=True)

    start = commands.add_parser("start", help="upgrade a pool blue-green", description=API_HELP)
    start.add_argument("--cluster", required=True, metavar="ARM_ID", help="the AKS cluster's ARM id")
    start.add_argument("--pool", required=True, help="the (blue) agent pool to replace")
    start.add_argument("--target-version", required=True, help='target version, "1.31" or "1.31.2"')
    start.add_argument("--batch-size", help='nodes per drain batch: "2" or "10%%" (default 10%%)')
    start.add_argument("--batch-soak-minutes", type=float, help="wait after each batch (default 15)")
    start.add_argument("--final-soak-minutes", type=float, help="wait before the last validation (default 60)")
    start.add_argument("--drain-timeout-minutes", type=float, help="per batch (default 30)")
    start.add_argument("--approval", action="store_true", help="wait for approve/rollback before commit")
    start.add_argument("--approval-timeout-minutes", type=float, help="how long to wait for a decision")
    start.add_argument("--on-timeout", choices=("commit", "rollback"), help="what a decision timeout does")
    start.add_argument("--no-auto-rollback", action="store_true",
                       help="on failed validation wait for a decision instead of rolling back")
    start.add_argument("--rollback-on-drain-timeout", action="store_true",
                       help="roll back (instead of failing) when a batch cannot drain in time")
    start.add_argument("--options", metavar="JSON", help="further options as JSON (the API's options object)")
    add_api_arguments(start)
    start.set_defaults(handler=run_start)

    # The same decisions as ``runs`` (one implementation), worded for a blue-green run.
    add_decision_commands(commands, DECISION_HELP)


def start_options(args: argparse.Namespace) -> dict:
    """The API's options object from the flags (flags win over --options)."""
    try:
        options = json.loads(args.options) if args.options else {}
    except json.JSONDecodeError as exc:
        raise InvalidInput("command line", "--options", f"not JSON: {exc.msg}") from exc
    if not isinstance(options, dict):
        raise InvalidInput("command line", "--options", "must be a JSON object")
    flags = {
        "drainBatchSize": args.batch_size,
        "batchSoakMinutes": args.batch_soak_minutes,
        "finalSoakMinutes": args.final_soak_minutes,
        "drainTimeoutMinutes": args.drain_timeout_minutes,
    }
    options.update({k: v for k, v in flags.items() if v is not None})
    approval = dict(options.get("approval") or {})
    if args.approval:
        approval["required"] = True
    if args.approval_timeout_minutes is not None:
        approval["timeoutMinutes"] = args.approval_timeout_minutes
    if args.on_timeout:
        approval["onTimeout"] = args.on_timeout
    if approval:
        options["approval"] = approval
    if args.no_auto_rollback:
        options["autoRollbackOnFailedValidation"] = False
    if args.rollback_on_drain_timeout:
        options["rollbackOnDrainTimeout"] = True
    return options


def run_start(args: argparse.Namespace) -> int:
    body = {"cluster": args.cluster, "pool": args.pool, "targetVersion": args.target_version,
            "strategy": "blue-green", "options": start_options(args)}
    run = UpgradeApi.from_args(args).call("POST", "/api/upgrades", body)
    print(f"started {run['id']}: {args.pool} -> {run['targetVersion']} ({run['status']})")
    print(f"follow it with: python -m upgrade status {run['id']}")
    return 0
