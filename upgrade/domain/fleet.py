"""Azure Kubernetes Fleet Manager update-run gates, as the app sees them.

Fleet's gate events come from the Azure Resource Notifications AKS Resources system topic
(subscription scope): ``Microsoft.ResourceNotifications.AKSResources.FleetGateCreated`` when an
update run reaches a gate, ``…FleetGateUpdated`` when its state changes, ``…FleetGateDeleted`` when
its update run is deleted. The gate's ARM id is ``data.resourceInfo.id``; both delivery schemas
(Event Grid and CloudEvents 1.0) are accepted. The event is only a signal: the gate itself is read
from ARM before anything is decided, so a stale or replayed event changes nothing.

A gate (api-version 2026-06-01) has a ``state`` of ``Pending``, ``Skipped`` or ``Completed`` and a
target: an update run, with the stage (and group) it sits on and its timing (``Before``/``After``).
There is no rejected state and no field for a reason: a gate the health gate refuses stays
Pending, and the reason goes into the app's own record and alert.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from upgrade.errors import InvalidInput

GATE_EVENT_PREFIX = "Microsoft.ResourceNotifications.AKSResources.FleetGate"
GATE_CREATED = GATE_EVENT_PREFIX + "Created"
GATE_UPDATED = GATE_EVENT_PREFIX + "Updated"
GATE_DELETED = GATE_EVENT_PREFIX + "Deleted"
GATE_EVENT_TYPES = (GATE_CREATED, GATE_UPDATED, GATE_DELETED)
PENDING, COMPLETED, SKIPPED = "Pending", "Completed", "Skipped"
_WHAT = "Fleet gate event"


@dataclass(frozen=True)
class GateRef:
    """``/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.ContainerService/fleets/{f}/gates/{g}``."""

    subscription_id: str
    resource_group: str
    fleet: str
    name: str

    @classmethod
    def parse(cls, arm_id: str, *, field: str = "data.resourceInfo.id") -> GateRef:
        parts = arm_id.strip("/").split("/") if isinstance(arm_id, str) else []
        if (len(parts) != 10 or parts[0].lower() != "subscriptions" or parts[2].lower() != "resourcegroups"
                or parts[4].lower() != "providers" or parts[5].lower() != "microsoft.containerservice"
                or parts[6].lower() != "fleets" or parts[8].lower() != "gates" or not all(parts)):
            raise InvalidInput(_WHAT, field, f"not a Fleet gate ARM id: {arm_id!r}")
        return cls(parts[1], parts[3], parts[7], parts[9])

    @property
    def arm_id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.ContainerService/fleets/{self.fleet}/gates/{self.name}")

    @property
    def record_key(self) -> str:
        """Table storage keys may not hold '/': the gate named by its id parts."""
        return f"{self.subscription_id}:{self.resource_group}:{self.fleet}:{self.name}".lower()


@dataclass(frozen=True)
class GateEvent:
    id: str
    event_type: str
    gate: GateRef


@dataclass(frozen=True)
class FleetGate:
    """A gate as read from ARM: its state and the update-run stage or group it holds."""

    gate: GateRef
    state: str
    update_run: str  # the update run's ARM id (the gate's target.id)
    stage: str | None
    group: str | None
    timing: str | None
    display_name: str | None = None
    etag: str | None = None


@dataclass(frozen=True)
class UpdateStage:
    """One stage of an update run's status: its groups and each group's member clusters (ARM ids)."""

    name: str
    groups: Mapping[str, tuple[str, ...]]


def is_gate_event(payload: Mapping[str, Any]) -> bool:
    kind = payload.get("type", payload.get("eventType"))
    return isinstance(kind, str) and kind.startswith(GATE_EVENT_PREFIX)


def parse_gate_event(payload: object) -> GateEvent:
    """One Fleet gate event (a dict or JSON text) in either schema; InvalidInput names the field."""
    if isinstance(payload, (str, bytes)):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise InvalidInput(_WHAT, "", f"not JSON: {exc}") from exc
    if not isinstance(payload, Mapping):
        raise InvalidInput(_WHAT, "", "expected a JSON object")
    type_field = "type" if "specversion" in payload else "eventType"
    kind = payload.get(type_field)
    if kind not in GATE_EVENT_TYPES:
        raise InvalidInput(_WHAT, type_field, f"{kind!r} is not one of {', '.join(GATE_EVENT_TYPES)}")
    event_id = payload.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidInput(_WHAT, "id", "missing")
    data = payload.get("data")
    info = data.get("resourceInfo") if isinstance(data, Mapping) else None
    if not isinstance(info, Mapping):
        raise InvalidInput(_WHAT, "data.resourceInfo", "missing")
    return GateEvent(id=event_id, event_type=kind, gate=GateRef.parse(info.get("id")))


def gate_clusters(stages: Sequence[UpdateStage], stage: str | None, group: str | None) -> list[str]:
    """The member clusters a gate speaks for: those of its group when it sits on a group, else of
    its stage (before it: the clusters about to be updated; after it: those just updated). Empty
    when the update run has no such stage or group."""
    for candidate in stages:
        if candidate.name != stage:
            continue
        if group is not None:
            return list(candidate.groups.get(group, ()))
        return [cluster for members in candidate.groups.values() for cluster in members]
    return []
