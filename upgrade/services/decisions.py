"""An operator's decision on any run: ``POST /api/upgrades/{id}/{decision}``.

Blue-green runs decide through their transition table (``services.bluegreen.decisions``), a
rollout through its own route (``services.rollouts``). Every other kind (rolling, remediation, a run recorded from an AKS event) may be paused, resumed and
aborted here; so may a blue-green run the reconciler marked stuck be resumed. Each decision is
one conditional write that carries the run's next message in its outbox, then the send:

- pause: the run parks; its live step is dropped when it arrives, and resume sends it again;
- resume (a paused or stuck run): the live step again, as a new attempt with the args it had;
- abort: the run ends where it is. The live step's cleanup hook (``StepSpec.on_poison``: a
  remediation restores the PDBs it relaxed) runs, and the ``run.aborted`` alert says what it did.

A decision that does not apply now is refused with the decisions that do.
"""

from __future__ import annotations

import logging
from typing import Any

from upgrade.domain.alerts import Alert
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.domain.steps import StepMessage
from upgrade.errors import Conflict, InvalidInput
from upgrade.ports import Platform
from upgrade.services.outbox import live_message, outbox_for, send_after_write
from upgrade.services.run_failures import run_cleanup

log = logging.getLogger("upgrade.decisions")

RUN_DECISIONS = ("pause", "resume", "abort")
_ALLOWED_BY_STATUS = {
    "running": ("pause", "abort"),
    "awaiting-decision": ("pause", "abort"),
    "paused": ("resume", "abort"),
    "stuck": ("resume", "abort"),
}


def decide(platform: Platform, run_id: str, decision: str, actor: str, reason: str = "", *,
           override: bool = False, while_paused: bool = False) -> RunRecord:
    """Apply ``decision`` to run ``run_id``; raises InvalidInput (unknown decision), NotFound,
    Conflict (not applicable now: the message lists what is). ``override`` and ``while_paused``
    qualify a blue-green approve."""
    from upgrade.domain.bluegreen import KIND as BLUE_GREEN
    from upgrade.services.rollouts import KIND as ROLLOUT

    run = platform.runs.get(run_id)
    if run.kind == ROLLOUT:
        raise InvalidInput("decision", "decision", f"run {run_id} is a rollout: decide it with "
                                                   f"POST /api/rollouts/{run_id}/{{decision}}")
    if run.kind == BLUE_GREEN and not (run.status == "stuck" and decision == "resume"):
        from upgrade.services.bluegreen.decisions import decide as decide_bluegreen

        return decide_bluegreen(platform, run_id, decision, actor, reason, override=override,
                                while_paused=while_paused)
    if decision not in RUN_DECISIONS:
        raise InvalidInput("decision", "decision", f"{decision!r} is not a decision on a {run.kind} run "
                                                   f"(decisions: {', '.join(RUN_DECISIONS)})")
    actor = (actor or "anonymous")[:200]
    for _ in range(5):  # a step may write the run meanwhile: read again and decide again
        run = platform.runs.get(run_id)
        allowed = decisions_now(run)
        if decision not in allowed:
            raise Conflict(f"run {run_id} is {run.status}: {decision} does not apply now; "
                           + (f"you may: {', '.join(allowed)}" if allowed else "no decision applies any more"))
        now = platform.clock.now()
        said = f"{decision} by {actor}" + (f": {reason}" if reason else "")
        record = {"decision": decision, "actor": actor, "at": now.isoformat(), "reason": reason}
        facts: dict[str, Any] = {"decisions": [*run.facts.get("decisions", []), record]}
        changes: dict[str, Any] = {"claim": None, "reason": said}
        if decision == "pause":
            facts["pausedFromStatus"] = run.status
            changes["status"] = "paused"
        elif decision == "abort":
            changes.update(status="aborted", attempt=run.attempt + 1, outbox=None)
        else:
            live = live_message(run)
            message = StepMessage(v=1, run_id=run.run_id, step=run.state, cluster=run.cluster, pool=run.pool,
                                  attempt=run.attempt + 1, args=dict(live.args) if live else {}, actor=actor)
            before = run.facts.get("pausedFromStatus") if run.status == "paused" else run.facts.get("stuckFromStatus")
            changes.update(status=before if before in ("running", "awaiting-decision") else "running",
                           attempt=message.attempt, outbox=outbox_for(message, ["decision", decision]))
        try:
            updated = platform.runs.update(run.evolve(now=now, facts=facts, **changes))
        except Conflict:
            continue
        log.info("run %s: %s by %s in %s", run_id, decision, actor, run.state,
                 extra={"run_id": run_id, "decision": decision, "actor": actor})
        send_after_write(platform, updated)
        platform.runs.append_history(HistoryEntry(run.run_id, now, run.state, run.attempt, "decision", said, actor))
        if decision == "abort":
            _aborted(platform, updated, run.state, actor)
        return updated
    raise Conflict(f"run {run_id} kept changing; try the decision again")


def decisions_now(run: RunRecord) -> tuple[str, ...]:
    """What an operator may decide on a (non blue-green) run in its current status."""
    return _ALLOWED_BY_STATUS.get(run.status, ())


def _aborted(platform: Platform, run: RunRecord, state: str, actor: str) -> None:
    cleanup = run_cleanup(platform, run, state, attempt=run.attempt, actor=actor) or "nothing to undo"
    platform.alerts.publish(Alert(
        kind="run.aborted", severity="warning", cluster=run.cluster, pool=run.pool, run_id=run.run_id,
        summary=f"{run.kind} run {run.run_id} on pool {run.pool or '(cluster)'} aborted by {actor} in {state}: "
                f"{cleanup}",
        details={"state": state, "kind": run.kind, "cleanup": cleanup}, dedup_key=f"{run.run_id}:aborted",
    ))
