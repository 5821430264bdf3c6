"""Run records: the audited state of one upgrade, remediation or scan run, and its history.

A run is a frozen record. Every change makes a new record (``evolve``) that the run store writes
conditionally on the ETag it read, so two deliveries of one step cannot both advance a run.
``for_storage``/``from_storage`` map to and from flat Table storage entities (JSON for nested
values), so the store adapter knows nothing of a run's meaning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

# "stuck": the reconciler found no live message it could re-send; the run keeps its pool until an
# operator resumes it (the live step is sent again) or aborts it.
ACTIVE_STATUSES = frozenset({"running", "paused", "awaiting-decision", "stuck"})
FINAL_STATUSES = frozenset({"succeeded", "failed", "rolled-back", "aborted"})
# Parked: no message is expected until an operator decides.
PARKED_STATUSES = frozenset({"paused", "stuck"})
# A history row's reason: well within the 64 KiB a Table property holds (UTF-16, two bytes a char).
MAX_HISTORY_REASON_CHARS = 16000
# What an operator reads first, kept short; the full text of a failure is in the history row.
MAX_REASON_CHARS = 4000


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    kind: str  # "blue-green" | "rolling" | "remediation" | "reconcile" | "scan" | "ping"
    cluster: str  # ARM id
    pool: str | None
    state: str  # the workflow state (step name) the run is in
    status: str  # running | paused | awaiting-decision | stuck | succeeded | failed | rolled-back | aborted
    created_at: datetime
    updated_at: datetime
    target_version: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # what the run learnt/created (green pool, snapshot…)
    reason: str = ""  # why the run is in its status (the last failure, the decision)
    attempt: int = 1  # attempt of ``state`` the run expects next: (state, attempt) names the live message
    claim: dict[str, Any] | None = None  # {"message_id", "until"}: a worker is executing the live step
    # The live message, written in the same conditional write that made it live, then sent:
    # {"from": [step, attempt] | ["decision", name] | ["start", kind], "message": json, "delay": s,
    #  "resent": n}. The step runner re-sends it for a redelivered sender, the reconciler when it is lost.
    outbox: dict[str, Any] | None = None
    etag: str | None = None  # set by the store; None = never stored

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def evolve(self, *, now: datetime, **changes: Any) -> RunRecord:
        """A copy with ``changes`` and updated_at = now; facts are merged, not replaced."""
        facts = changes.pop("facts", None)
        merged = {**self.facts, **facts} if facts is not None else self.facts
        if "reason" in changes:
            changes["reason"] = short_reason(changes["reason"])
        return replace(self, updated_at=now, facts=merged, **changes)

    def live_due(self) -> datetime | None:
        """When the run's live step must have started (or, claimed, finished) by: the claim's end,
        else the moment its outbox message becomes visible. None when no message is expected
        (final, paused, stuck); an active run with nothing in its outbox is due at once."""
        if not self.active or self.status in PARKED_STATUSES:
            return None
        if self.claim and self.claim.get("until"):
            return datetime.fromisoformat(self.claim["until"])
        if self.outbox:
            return self.updated_at + timedelta(seconds=float(self.outbox.get("delay") or 0))
        return self.updated_at

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


def short_reason(reason: str) -> str:
    """``reason`` cut to MAX_REASON_CHARS, saying so."""
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return reason[: MAX_REASON_CHARS - 40] + f" … ({len(reason)} characters, cut)"


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
            "reason": self.reason[:MAX_HISTORY_REASON_CHARS],
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

