"""An operator's decision on a blue-green run (approve, rollback, pause, resume, abort), recorded
with who and when, applied through the transition table with a conditional write."""

from __future__ import annotations

import logging
from typing import Any

from upgrade.domain.alerts import Alert
from upgrade.domain.bluegreen import (
    DECISIONS,
    KIND,
    STATE_STATUS,
    GuardContext,
    TransitionNotAllowed,
    cleanup_left,
    decisions_allowed,
    next_state,
)
from upgrade.domain.identity import same_person
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.domain.steps import StepMessage
from upgrade.errors import Conflict, InvalidInput, NotAllowed
from upgrade.ports import Platform
from upgrade.services.bluegreen.flow import (
    STEP_PREFIX,
    entry_of,
    run_options,
)
from upgrade.services.outbox import live_message, outbox_for, send_after_write

log = logging.getLogger("upgrade.bluegreen")


def decide(platform: Platform, run_id: str, decision: str, actor: str, reason: str = "", *,
           override: bool = False, while_paused: bool = False) -> RunRecord:
    """Apply an operator's decision to a blue-green run; recorded with who and when.

    approve/rollback move the run to commit/rollback; pause parks it (its live step is dropped
    until resume re-sends it); abort ends it where it is, cleaning nothing up.

    A paused run moves only on resume, rollback or abort: approve is refused ("resume first")
    unless ``while_paused`` says the operator means it. An approval after a failed validation
    commits only with ``override``. Both are recorded with the decision, and an override is its
    own history row (``override``)."""

    if decision not in DECISIONS:
        raise InvalidInput("decision", "decision", f"{decision!r} is not one of {', '.join(DECISIONS)}")
    if (override or while_paused) and decision != "approve":
        field = "override" if override else "whilePaused"
        raise InvalidInput("decision request", field, f"applies to approve only, not to {decision}")
    actor = (actor or "anonymous")[:200]
    if decision == "approve":
        _check_four_eyes(platform, run_id, actor)
    for _ in range(5):  # a step may write the run meanwhile: read again and re-decide
        run = platform.runs.get(run_id)
        if run.kind != KIND:
            raise NotAllowed(f"run {run_id} is a {run.kind} run; decisions apply to blue-green runs")
        if not run.active:
            raise Conflict(f"run {run_id} is {run.status}: no decision applies any more")
        state = run.state.removeprefix(STEP_PREFIX)
        options = run_options(run)
        overriding = decision == "approve" and _check_approval(run, override=override, while_paused=while_paused)
        guard_context = GuardContext(options, run.facts, run.status)
        try:
            target = next_state(state, decision, guard_context)
        except TransitionNotAllowed as exc:
            allowed = decisions_allowed(state, guard_context)
            raise Conflict(f"run {run_id} is {run.status} in {state}: {decision} does not apply now; "
                           + (f"you may: {', '.join(allowed)}" if allowed else "no decision applies")) from exc
        now = platform.clock.now()
        record: dict[str, Any] = {"decision": decision, "actor": actor, "at": now.isoformat(), "reason": reason}
        facts: dict[str, Any] = {"decisions": [*run.facts.get("decisions", []), record]}
        what = decision
        if decision == "approve" and run.status == "paused":
            record["whilePaused"] = True
            what += " while paused"
        if overriding:
            record["override"] = True
            what += " overriding the failed validation"
            facts["validationOverridden"] = {"actor": actor, "at": now.isoformat(), "reason": reason,
                                             "validation": (run.facts.get("validation") or {}).get("summary")}
        changes: dict[str, Any] = {"claim": None, "reason": f"{what} by {actor}" + (f": {reason}" if reason else "")}
        message: StepMessage | None = None
        delay = 0.0
        if decision == "pause":
            facts["pausedFromStatus"] = run.status
            changes.update(status="paused")
        elif decision == "abort":
            changes.update(state=STEP_PREFIX + "aborted", status="aborted", attempt=run.attempt + 1, outbox=None)
        else:
            attempt = run.attempt + 1  # a new (state, attempt): any copy of the old live message is stale
            if decision == "resume":
                status = run.facts.get("pausedFromStatus") or "running"
                live = live_message(run)  # a resumed drain keeps its per-node progress, a validate its start
                args: dict = dict(live.args) if live else {}
            else:
                status = STATE_STATUS.get(target, "running")
                delay, entry_facts, args = entry_of(target, now, options)
                facts.update(entry_facts)
                if decision == "rollback":
                    facts.update(rollbackAfterFailure=False, rollbackCause=f"rollback asked by {actor}"
                                 + (f": {reason}" if reason else ""))
                if decision == "approve":
                    facts["commitRefused"] = None
            message = StepMessage(v=1, run_id=run.run_id, step=STEP_PREFIX + target, cluster=run.cluster,
                                  pool=run.pool, attempt=attempt, args=args or {}, actor=actor)
            changes.update(state=message.step, attempt=attempt, status=status,
                           outbox=outbox_for(message, ["decision", decision], delay=delay))
        try:
            updated = platform.runs.update(run.evolve(now=now, facts=facts, **changes))
        except Conflict:
            continue
        log.info("run %s: %s by %s in %s -> %s", run_id, decision, actor, state, updated.state,
                 extra={"run_id": run_id, "decision": decision, "actor": actor})
        send_after_write(platform, updated)
        platform.runs.append_history(HistoryEntry(run.run_id, now, run.state, run.attempt,
                                                  "override" if overriding else "decision", changes["reason"], actor))
        if decision == "abort":
            left = cleanup_left(state, run.facts, run.pool or "")  # only what this run created or cordoned
            platform.alerts.publish(Alert(
                kind="run.aborted", severity="warning", cluster=run.cluster, pool=run.pool, run_id=run.run_id,
                summary=f"blue-green upgrade of {run.pool} aborted by {actor} in {state}; pools left as they are"
                        + ("; left to clean up: " + "; ".join(left) if left else ""),
                details={"greenPool": run.facts.get("greenPool"), "state": state, "leftToCleanUp": list(left)},
                dedup_key=f"{run.run_id}:aborted",
            ))
        return updated
    raise Conflict(f"run {run_id} kept changing; try the decision again")


def _check_approval(run: RunRecord, *, override: bool, while_paused: bool) -> bool:
    """Raise Conflict when approve may not apply as asked; True when it overrides a failed validation."""
    if run.status == "paused" and not while_paused:
        raise Conflict(f"run {run.run_id} is paused: resume first (or approve with whilePaused to commit it "
                       "as it is, recorded as such)")
    validation = run.facts.get("validation") or {}
    failed = bool(validation) and not validation.get("passed")
    if failed and not override:
        raise Conflict(f"run {run.run_id}'s validation failed ({validation.get('summary') or 'see its facts'}): "
                       "approve commits it only with override, recorded as an override")
    return failed


def _check_four_eyes(platform: Platform, run_id: str, approver: str) -> None:
    """With the pool policy's ``fourEyes``, whoever started the run may not approve its commit."""
    run = platform.runs.get(run_id)
    if not platform.policy.for_pool(run.cluster, run.pool).four_eyes:
        return
    starter = next((h.actor for h in platform.runs.history(run_id) if h.outcome == "started"), "")
    if same_person(starter, approver):
        raise NotAllowed(f"four-eyes policy on {run.pool}: {approver} started run {run_id} and may not also "
                         "approve its commit; another approver must")
