"""``python -m upgrade event [--dry-run] FILE|-``: parse AKS events and show the app's reaction.

Reads one event or an array (Event Grid or CloudEvents 1.0 schema) from a file or stdin and
prints JSON: the typed events and, for each, the reaction ``on_aks_event`` takes; events of a type
the app does not handle are listed under ``skipped`` with why (exit 2 when no event is left). With
``--dry-run`` nothing else happens; without it the events are also handed to the app's event
reactions, with the app settings from the environment, exactly as the trigger does. A Fleet
Manager gate event (one, in either schema) is shown with the gate it names and its reaction.
"""

from __future__ import annotations

import argparse
import json
import sys

from upgrade.domain.events import parse_events, skipped_events
from upgrade.domain.fleet import GateEvent, is_gate_event, parse_gate_event
from upgrade.domain.policy import UpgradePolicy
from upgrade.domain.reactions import planned_reaction
from upgrade.errors import InvalidInput


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "event",
        help="parse an AKS event file and show the reaction",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument("file", metavar="FILE|-", help="event JSON file, or - for stdin")
    parser.add_argument("--dry-run", action="store_true", help="only show what would happen")
    parser.set_defaults(handler=run)


def read_payload(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as exc:
        raise InvalidInput("event file", "FILE", f"cannot read {path!r}: {exc.strerror}") from exc


FLEET_GATE_REACTION = ("read the gate; if Pending, run the health gate on the allow-listed member clusters of its "
                       "stage or group: Completed when healthy, else left Pending with the reason recorded and alerted")


def _gate_event(payload: bytes) -> GateEvent | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None  # parse_events names what is wrong
    return parse_gate_event(data) if isinstance(data, dict) and is_gate_event(data) else None


def _run_gate_event(event: GateEvent, dry_run: bool) -> int:
    report: dict = {"dryRun": dry_run, "fleetGateEvent": {"id": event.id, "type": event.event_type,
                                                          "gate": event.gate.arm_id},
                    "reaction": FLEET_GATE_REACTION}
    if not dry_run:
        from upgrade.services.fleet_gates import react_to_gate_event
        from upgrade.wiring import platform

        report["applied"] = [react_to_gate_event(event, platform())]
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def run(args: argparse.Namespace) -> int:
    payload = read_payload(args.file)
    gate_event = _gate_event(payload)
    if gate_event is not None:
        return _run_gate_event(gate_event, args.dry_run)
    events = parse_events(payload)
    skipped = skipped_events(payload)
    if not events:
        first = skipped[0]
        raise InvalidInput("event file", "eventType", f"{first['type']!r} (event {first['id']}) is {first['reason']}")
    policies = None if args.dry_run else _policy()
    report = {
        "dryRun": args.dry_run,
        "events": [event.to_public() for event in events],
        "skipped": skipped,
        "reactions": [planned_reaction(event, policies and policies.for_pool(event.cluster)) for event in events],
    }
    if not args.dry_run:
        from upgrade.services.event_reactions import react_to_events
        from upgrade.wiring import platform

        report["applied"] = [str(outcome) for outcome in react_to_events(events, platform())]
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _policy() -> UpgradePolicy:
    from upgrade.settings import current_settings

    return current_settings().upgrade_policy
