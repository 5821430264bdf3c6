"""Alerts: what the product tells an operator, in one documented schema.

Published as CloudEvents (type ``com.aksupgrade.<kind>``) to the alerts topic and written as one
structured log line each. ``dedup_key`` identifies "the same node and condition" for re-alerting.
``event_id`` is the CloudEvents id: the same alert published again (a retried or redelivered step)
carries the same id, so a consumer can drop the copy.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "error", "critical")
# The namespace of alert ids (uuid5): fixed, so an id depends on the alert alone.
ALERT_ID_NAMESPACE = uuid.UUID("5d0c7f4e-8a3b-4f0e-9a41-2f6b1c9e7d10")


@dataclass(frozen=True)
class Alert:
    kind: str  # e.g. "node.quarantined", "node.resolved", "run.failed", "version.available"
    severity: str  # info | warning | error | critical
    cluster: str  # ARM id
    summary: str
    pool: str | None = None
    node: str | None = None
    run_id: str | None = None
    blockers: tuple[dict[str, Any], ...] = ()  # pods and the PDBs that block them
    options: tuple[dict[str, Any], ...] = ()  # ways out: {"kind", "description", "command", "request"}
    details: dict[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None
    step: str | None = None  # the step (and its attempt) that raised the alert, when a step did
    attempt: int | None = None

    @property
    def event_id(self) -> str:
        """A uuid5 of run, step, attempt and kind, plus the node and dedup key (one step may alert
        about several nodes); an alert outside any run and without a dedup key adds its summary."""
        parts = [self.kind, self.run_id or "", self.step or "", str(self.attempt or ""), self.cluster.lower(),
                 self.node or "", self.dedup_key or ""]
        if not self.run_id and not self.dedup_key:
            parts.append(self.summary)
        return str(uuid.uuid5(ALERT_ID_NAMESPACE, "|".join(parts)))

    @property
    def event_type(self) -> str:
        return f"com.aksupgrade.{self.kind}"

    def to_event_data(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "summary": self.summary,
            "cluster": self.cluster,
            "pool": self.pool,
            "node": self.node,
            "runId": self.run_id,
            "blockers": list(self.blockers),
            "options": list(self.options),
            "details": self.details,
        }
