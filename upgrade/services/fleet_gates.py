"""Fleet Manager update-run gates approved by the health gate the rollouts use.

On a gate event the gate is read from ARM (the event is only a signal). A gate that is not
Pending is left alone, so a redelivered or late event changes nothing. For a Pending gate, the
member clusters of the update-run stage or group it sits on are found from the update run; each
must be in ALLOWED_CLUSTERS. The health gate (open quarantine findings or cordoned nodes, failed
validation of each pool's newest run, open node alerts at or above ``error``) then decides:

- it holds: the gate is set Completed (conditional on the eTag read), and the decision recorded;
- it does not (or a cluster is not allow-listed, or none is found): the gate stays Pending, since
  Fleet has no rejected state and no field for a reason, and the reason is recorded and alerted
  (``fleet.gate-blocked``, deduplicated per gate and reason: a redelivery or a look again that
  finds the same reason does not alert twice).

A refused gate is looked at again by ``recheck_blocked_gates`` (the run reconciler's timer), so it
is approved once its findings are gone; a gate completed or skipped in Fleet meanwhile is recorded
as such and no longer looked at, a deleted one forgotten.

Records: the state table, partition ``fleetgate``, a row per gate (``GateRef.record_key``) with the
verdict, the reason, the clusters, the event id, whether the alert went out, and when. A verdict is
written conditional on the record read before deciding, so an event that decided on a record
another reaction changed meanwhile (the timer's approval, say) is refused and, delivered again,
decides on what it then finds; an approval made in Fleet is always recorded.
"""

from __future__ import annotations

import logging
from typing import Any

from upgrade.domain.alerts import Alert
from upgrade.domain.fleet import (
    GATE_DELETED,
    GATE_UPDATED,
    PENDING,
    FleetGate,
    GateEvent,
    GateRef,
    gate_clusters,
)
from upgrade.domain.rollouts import HealthGate
from upgrade.errors import Conflict, NotFound, UpgradeError
from upgrade.ports import Platform
from upgrade.services.health_gate import health_gate_failures, latest_runs

RECORD_PARTITION = "fleetgate"
BLOCKED = "blocked"
log = logging.getLogger(__name__)


def _previous(platform: Platform, gate: GateRef) -> tuple[dict[str, Any], str | None]:
    """The gate's record and its ETag (``{}``, None: none yet)."""
    found = platform.state.get(RECORD_PARTITION, gate.record_key)
    return found if found else ({}, None)


# The ETag to write a record over: the one read before deciding (the write is refused, Conflict,
# when another reaction recorded meanwhile: the caller is retried and decides again on what it
# finds), or LATEST, for the record of an approval already made in Fleet (which is the truth).
LATEST = object()


def _record(platform: Platform, gate: FleetGate, event: GateEvent, verdict: str, reason: str,
            clusters: list[str], *, over: object, alerted: bool = False) -> None:
    value = {"gate": gate.gate.arm_id, "updateRun": gate.update_run, "stage": gate.stage, "group": gate.group,
             "verdict": verdict, "reason": reason, "clusters": clusters, "eventId": event.id, "alerted": alerted,
             "checkedAt": platform.clock.now().isoformat()}
    if over is LATEST:
        over = _previous(platform, gate.gate)[1]  # a writer in between still gets Conflict: retried
    platform.state.put(RECORD_PARTITION, gate.gate.record_key, value, etag=over)


def react_to_gate_event(event: GateEvent, platform: Platform) -> str:
    """Approve the gate when healthy, else leave it Pending with the reason recorded and alerted."""
    if event.event_type == GATE_DELETED:
        platform.state.delete(RECORD_PARTITION, event.gate.record_key)
        return f"gate {event.gate.arm_id} deleted with its update run: nothing to do"
    fleet = platform.fleet(event.gate.subscription_id)
    gate = fleet.get_gate(event.gate)
    previous, read = _previous(platform, event.gate)
    if gate.state != PENDING:
        # completed or skipped in Fleet since (or by this app just before a crash left the record
        # behind): no longer looked at
        if previous.get("verdict") == BLOCKED:
            _record(platform, gate, event, gate.state.lower(), f"found {gate.state} after: "
                    f"{previous.get('reason')}", list(previous.get("clusters") or []), over=read)
        return f"gate {gate.gate.arm_id} is {gate.state}: nothing to do"
    clusters = gate_clusters(fleet.update_run_stages(gate.update_run), gate.stage, gate.group)
    allowed = {c.lower() for c in platform.allowed_clusters}
    not_allowed = [c for c in clusters if c.lower() not in allowed]
    where = f"stage {gate.stage}" + (f" group {gate.group}" if gate.group else "")
    if not clusters:
        reasons = [f"no member cluster found for {where} of {gate.update_run}"]
    elif not_allowed:
        reasons = [f"{c}: not in ALLOWED_CLUSTERS" for c in not_allowed]
    else:
        reasons = health_gate_failures(platform, HealthGate(), clusters, lambda c: latest_runs(platform, c))
    if not reasons:
        try:
            fleet.complete_gate(gate)
        except Conflict as exc:  # changed since read (completed or skipped meanwhile): its own event follows
            return f"gate {gate.gate.arm_id} changed since read, left to its next event: {exc}"
        reason = f"healthy: {len(clusters)} cluster(s) of {where}"
        _record(platform, gate, event, "approved", reason, clusters, over=LATEST)
        return f"gate {gate.gate.arm_id} approved: {reason}"
    reason = "; ".join(reasons)
    alerted = previous.get("verdict") == BLOCKED and previous.get("reason") == reason and previous.get("alerted")
    if not alerted:
        alerted = platform.alerts.publish(Alert(
            kind="fleet.gate-blocked", severity="error", cluster=clusters[0] if clusters else gate.update_run,
            summary=f"Fleet gate {gate.display_name or gate.gate.name} ({where} of {gate.update_run}) left Pending: {reason}",
            details={"gate": gate.gate.arm_id, "updateRun": gate.update_run, "stage": gate.stage, "group": gate.group,
                     "clusters": clusters},
            dedup_key=f"{gate.gate.record_key}:{BLOCKED}:{reason}"))
    _record(platform, gate, event, BLOCKED, reason, clusters, over=read, alerted=bool(alerted))
    return f"gate {gate.gate.arm_id} left Pending: {reason}"


def recheck_blocked_gates(platform: Platform) -> list[str]:
    """Look again at every gate last left Pending: approved once its findings are gone. One gate's
    failure (ARM unreachable, a cluster not answering) is logged and does not stop the others."""
    outcomes = []
    for key, value in platform.state.list(RECORD_PARTITION):
        if value.get("verdict") != BLOCKED:
            continue
        try:
            gate = GateRef.parse(value["gate"], field="gate")
            event = GateEvent(id=f"recheck:{platform.clock.now().isoformat()}", event_type=GATE_UPDATED, gate=gate)
            outcomes.append(react_to_gate_event(event, platform))
        except NotFound:  # the gate went with its update run
            platform.state.delete(RECORD_PARTITION, key)
            outcomes.append(f"gate {value.get('gate')} no longer exists: forgotten")
        except (UpgradeError, KeyError, ValueError) as exc:
            log.warning("Fleet gate %s not looked at again: %s", value.get("gate"), exc)
            outcomes.append(f"gate {value.get('gate')} not looked at again: {exc}")
    return outcomes
