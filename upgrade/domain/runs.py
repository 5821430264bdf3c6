"""Run records: the audited state of one upgrade, remediation or scan run, and its history.

A run is a frozen record. Every change makes a new record (``evolve``) that the run store writes
conditionally on the ETag it read, so two deliveries of one step cannot both advance a run.
``for_storage``/``from_storage`` map to and from flat Table storage entities (JSON for nested
values), so the store adapter knows nothing of a run's meaning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

ACTIVE_STATUSES = frozenset({"running", "paused", "awaiting-decision"})
FINAL_STATUSES = frozenset({"succeeded", "failed", "rolled-back", "aborted"})


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    kind: str  # "blue-green" | "rolling" | "remediation" | "reconcile" | "scan" | "ping"
    cluster: str  # ARM id
    pool: str | None
    state: str  # the workflow state (step name) the run is in
    status: str  # running | paused | awaiting-decision | succeeded | failed | rolled-back | aborted
    created_at: datetime
    updated_at: datetime
    target_version: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # what the run learnt/created (green pool, snapshot…)
    reason: str = ""  # why the run is in its status (the last failure, the decision)
    attempt: int = 1  # attempt of ``state`` the run expects next: (state, attempt) names the live message
    claim: dict[str, Any] | None = None  # {"message_id", "until"}: a worker is executing the live step
    outbox: dict[str, Any] | None = None  # the message the last transition sent, and which step sent it
    etag: str | None = None  # set by the store; None = never stored

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def evolve(self, *, now: datetime, **changes: Any) -> RunRecord:
        """A copy with ``changes`` and updated_at = now; facts are merged, not replaced."""
        facts = changes.pop("facts", None)
        merged = {**self.facts, **facts} if facts is not None else self.facts
        return replace(self, updated_at=now, facts=merged, **changes)

    def for_storage(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "cluster": self.cluster,
            "pool": self.pool or "",
            "state": self.state,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "target_version": self.target_version or "",
            "options": json.dumps(self.options, sort_keys=True),
            "facts": json.dumps(self.facts, sort_keys=True),
            "reason": self.reason,
            "attempt": self.attempt,
            "claim": json.dumps(self.claim) if self.claim else "",
            "outbox": json.dumps(self.outbox) if self.outbox else "",
        }

    @classmethod
    def from_storage(cls, entity: dict[str, Any], etag: str | None) -> RunRecord:
        return cls(
            run_id=entity["run_id"],
            kind=entity["kind"],
            cluster=entity["cluster"],
            pool=entity.get("pool") or None,
            state=entity["state"],
            status=entity["status"],
            created_at=datetime.fromisoformat(entity["created_at"]),
            updated_at=datetime.fromisoformat(entity["updated_at"]),
            target_version=entity.get("target_version") or None,
            options=json.loads(entity.get("options") or "{}"),
            facts=json.loads(entity.get("facts") or "{}"),
            reason=entity.get("reason", ""),
            attempt=int(entity.get("attempt") or 1),
            claim=json.loads(entity["claim"]) if entity.get("claim") else None,
            outbox=json.loads(entity["outbox"]) if entity.get("outbox") else None,
            etag=etag,
        )

    def to_public(self) -> dict[str, Any]:
        """The JSON an operator sees (HTTP status endpoint, CLI)."""
        return {
            "id": self.run_id,
            "kind": self.kind,
            "cluster": self.cluster,
            "pool": self.pool,
            "state": self.state,
            "status": self.status,
            "targetVersion": self.target_version,
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
            "options": self.options,
            "facts": self.facts,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One attempt of one step: the audit trail row."""

    run_id: str
    at: datetime
    step: str
    attempt: int
    outcome: str  # next | retry | done | failed | error | poison | decision | started
    reason: str = ""
    actor: str = "system"

    def for_storage(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "at": self.at.isoformat(),
            "step": self.step,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "reason": self.reason[:30000],
            "actor": self.actor,
        }

    @classmethod
    def from_storage(cls, entity: dict[str, Any]) -> HistoryEntry:
        return cls(
            run_id=entity["run_id"],
            at=datetime.fromisoformat(entity["at"]),
            step=entity["step"],
            attempt=int(entity["attempt"]),
            outcome=entity["outcome"],
            reason=entity.get("reason", ""),
            actor=entity.get("actor", "system"),
        )

    def to_public(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "step": self.step,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "reason": self.reason,
            "actor": self.actor,
        }

