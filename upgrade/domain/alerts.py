"""Alerts: what the product tells an operator, in one documented schema.

Published as CloudEvents (type ``com.aksupgrade.<kind>``) to the alerts topic and written as one
structured log line each. ``dedup_key`` identifies "the same node and condition" for re-alerting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "error", "critical")


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
