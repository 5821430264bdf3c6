"""The run reconciler (timer ``reconcile_runs``): no active run is left without a live message.

Each run says when its live step must have started by (``RunRecord.live_due``: the claim's end,
else when its outbox message became visible). The run store lists the active runs past that
moment plus a margin from its index of active runs (``RunStore.overdue``), never by reading every
run. For each one the reconciler re-sends the outbox: the write that counts the re-send (and
drops an expired claim) comes first, so two timers never both send, then the send. A copy that
turns up late is dropped as stale or deferred by the claim, as any duplicate is.

A run that cannot be recovered is marked ``stuck`` (it keeps its pool) with a critical
``run.stuck`` alert naming it: its outbox holds no live message, the queue refuses that message
for good, or its message was re-sent MAX_RESENDS times and the step still did not run. One run
that cannot even be marked stuck is logged and never stops the sweep for the others. An operator resumes it (the live step is sent
again) or aborts it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from upgrade.domain.alerts import Alert
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.errors import Conflict, NotFound, PermanentError, TemporaryError
from upgrade.ports import Platform
from upgrade.services.outbox import live_message

log = logging.getLogger("upgrade.reconciler")

MAX_RESENDS = 3


def reconcile_runs(platform: Platform, *, margin_seconds: float) -> list[str]:
    """Re-send the live message of every overdue run, or mark it stuck; one line per run."""
    now = platform.clock.now()
    notes = []
    for run in platform.runs.overdue(now - timedelta(seconds=margin_seconds)):
        try:
            notes.append(recover_run(platform, run, now))
        except (Conflict, NotFound):
            notes.append(f"run {run.run_id}: moved meanwhile, left to its step")
        except TemporaryError as exc:
            notes.append(f"run {run.run_id}: not recovered this time ({exc})")
        except PermanentError as exc:
            # Whatever one run's records hold, the sweep goes on to the others.
            log.error("reconcile: run %s could not be recovered or marked stuck: %s", run.run_id, exc)
            notes.append(f"run {run.run_id}: could not be recovered ({exc})")
    for note in notes:
        log.warning("reconcile: %s", note)
    return notes


def recover_run(platform: Platform, run: RunRecord, now: datetime) -> str:
    message = live_message(run)
    resent = int((run.outbox or {}).get("resent", 0))
    if message is None:
        return mark_stuck(platform, run, now, f"no message for its live step {run.state}#{run.attempt} was recorded")
    if resent >= MAX_RESENDS:
        return mark_stuck(platform, run, now, f"its step {run.state}#{run.attempt} was re-sent {resent} time(s) "
                                              "and still did not run")
    outbox = {**(run.outbox or {}), "resent": resent + 1, "delay": 0.0}
    updated = platform.runs.update(run.evolve(now=now, claim=None, outbox=outbox))
    try:
        platform.queue.send(message)
    except PermanentError as exc:  # the queue refuses it for good (e.g. over its size limit)
        return mark_stuck(platform, updated, now, f"its step {run.state}#{run.attempt} could not be sent: {exc}")
    _history(platform, updated, now, "resent",
             f"live step {run.state}#{run.attempt} had not run by its due time: re-sent ({resent + 1}/{MAX_RESENDS})")
    return f"run {run.run_id}: re-sent {run.state}#{run.attempt} ({resent + 1}/{MAX_RESENDS})"


def mark_stuck(platform: Platform, run: RunRecord, now: datetime, why: str) -> str:
    reason = f"stuck: {why}; resume it to send the step again, or abort it"
    stuck = platform.runs.update(run.evolve(now=now, status="stuck", claim=None, reason=reason,
                                            facts={"stuckFromStatus": run.status}))
    _history(platform, stuck, now, "stuck", reason)
    platform.alerts.publish(Alert(
        kind="run.stuck", severity="critical", cluster=run.cluster, pool=run.pool, run_id=run.run_id,
        summary=f"{run.kind} run {run.run_id} on pool {run.pool or '(cluster)'} is stuck in {run.state}: {why}. "
                "It keeps the pool; resume it to send its step again, or abort it.",
        details={"state": run.state, "attempt": run.attempt, "kind": run.kind, "previousStatus": run.status},
        dedup_key=f"{run.run_id}:stuck:{run.state}:{run.attempt}",
    ))
    return f"run {run.run_id}: marked stuck ({why})"


def _history(platform: Platform, run: RunRecord, now: datetime, outcome: str, reason: str) -> None:
    platform.runs.append_history(HistoryEntry(run.run_id, now, run.state, run.attempt, outcome, reason, "reconciler"))
