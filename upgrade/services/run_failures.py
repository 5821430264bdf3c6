"""How a run ends when its step cannot: the poison queue's handler, a transition the store
refuses, a cluster outside the allow-list, and the ``run.failed`` alert every failed run raises.

The failure is recorded (a small write, a history row) before the workflow's cleanup hook
(``StepSpec.on_poison``) runs; a hook that fails is logged and alerted on its own, and never loses
that record. An operator's abort runs the same hook (``run_cleanup``).
"""

from __future__ import annotations

import logging

from upgrade.domain.alerts import Alert
from upgrade.domain.model import is_allowed_cluster
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.domain.steps import StepMessage, parse_step_message
from upgrade.errors import Conflict, InvalidInput, NotFound
from upgrade.ports import Platform
from upgrade.services.registry import step_registry

log = logging.getLogger("upgrade.steps")


def alert_failed(platform: Platform, run: RunRecord | None, message: StepMessage, reason: str,
                 **details: str) -> None:
    """The run.failed alert of a run that ended failed at ``message``'s step (``run`` None: the
    message names a run the store does not hold); ``details`` adds to what the alert says."""
    kind = run.kind if run is not None else "(unknown kind)"
    pool = run.pool if run is not None else message.pool
    platform.alerts.publish(
        Alert(kind="run.failed", severity="error", cluster=run.cluster if run is not None else message.cluster,
              pool=pool, run_id=message.run_id, step=message.step, attempt=message.attempt,
              summary=f"{kind} run {message.run_id} on pool {pool or '(cluster)'} failed at {message.step}: {reason}",
              details={"step": message.step, "kind": kind, **details}, dedup_key=f"{message.run_id}:run.failed")
    )


def fail_run_if_active(platform: Platform, message: StepMessage, reason: str) -> None:
    """Fail the message's run, if active, record it (history ``refused``) and alert; no cleanup
    hook runs (it would act on the cluster the step was refused for)."""
    try:
        run = platform.runs.get(message.run_id)
    except NotFound:
        return
    if run.active:
        fail_run(platform, message, reason, outcome="refused", cleanup=False)


def record_poisoned_step(body: str, platform: Platform) -> RunRecord | None:
    """The poison queue's handler: mark the step's run failed, record it, run the workflow's poison
    cleanup (``StepSpec.on_poison``), and raise an alert. The failure is recorded before the cleanup
    runs, and a cleanup that fails is logged and alerted on its own: it never loses that record.
    A message that is not the run's live step (``(state, attempt)``), or whose run ended other than
    failed, leaves the run as it is, with a history row."""
    try:
        message = parse_step_message(body)
    except InvalidInput as exc:
        log.error("poison queue: unreadable step message (%s); body=%.500s", exc, body)
        platform.alerts.publish(
            Alert(kind="step.poisoned", severity="error", cluster="(unknown)",
                  summary=f"An unreadable step message was moved to the poison queue: {exc}",
                  details={"body": body[:2000]})
        )
        return None
    try:
        run = platform.runs.get(message.run_id)
    except NotFound:
        run = None
    if run is not None and _not_poisoned_by(run, message):
        # A copy that was no longer live (a duplicate, or a sender whose transition was written
        # and whose re-send kept failing): the run's live step is elsewhere, and its own message,
        # or the reconciler, carries it on; or the run already ended otherwise (succeeded, aborted).
        # Failing it, and running a cleanup for a step it has left, would undo work still going on.
        log.warning("poison queue: step %s#%d of run %s is not its live step (%s#%d, %s): the run is left as is",
                    message.step, message.attempt, run.run_id, run.state, run.attempt, run.status)
        _append_history(platform, run, message.step, message.attempt, "poison-stale",
                        f"a stale copy of step {message.step}#{message.attempt} reached the poison queue; "
                        f"the run is {run.status} at {run.state}#{run.attempt}")
        return run
    return fail_run(platform, message, (
        f"step {message.step}#{message.attempt} could not be completed after the host's "
        "maxDequeueCount deliveries and was moved to the poison queue"
    ))


def _not_poisoned_by(run: RunRecord, message: StepMessage) -> bool:
    """Whether ``message`` is no longer ``run``'s live step: the active run moved on, or the run
    ended other than failed. (A failed run is handled again: a poison handler that died after its
    failure write still owes the history row, the cleanup and the alert.)"""
    if run.active:
        return (run.state, run.attempt) != (message.step, message.attempt)
    return run.status != "failed"


def fail_run(platform: Platform, message: StepMessage, reason: str, *, outcome: str = "poison",
             cleanup: bool = True) -> RunRecord | None:
    """Fail the message's run for ``reason`` (a small write), record it (history ``outcome``), run
    the step's cleanup hook (unless ``cleanup`` is False), and raise the run.failed alert."""
    run: RunRecord | None = None
    try:
        run = platform.runs.get(message.run_id)
    except NotFound:
        pass
    while run is not None and run.active:
        try:
            run = platform.runs.update(
                run.evolve(now=platform.clock.now(), status="failed", reason=reason, claim=None)
            )
        except Conflict:
            run = platform.runs.get(message.run_id)
    if run is not None:
        _append_history(platform, run, message.step, message.attempt, outcome, reason)
    log.error("%s: %s (run %s on %s)", outcome, reason, message.run_id, message.cluster)
    done = run_cleanup(platform, run, message.step, attempt=message.attempt) if run is not None and cleanup else None
    alert_failed(platform, run, message, reason, **({"cleanup": done} if done else {}))
    return run


def run_cleanup(platform: Platform, run: RunRecord, step: str, *, attempt: int, actor: str = "system") -> str | None:
    """Run the cleanup hook of the workflow ``step`` belongs to on ``run``; returns what it did, None
    when there is none. A hook that fails is recorded and alerted on (run.cleanup-failed); a run
    whose cluster ALLOWED_CLUSTERS no longer names is not touched (recorded, and said in the
    returned text, which the caller's alert carries)."""
    spec = step_registry().get(step)
    if spec is None or spec.on_poison is None:
        return None
    if not is_allowed_cluster(run.cluster, platform.allowed_clusters):
        # The allow-list holds for a cleanup as for a step: one that changed since the run started
        # leaves what the step did to a person, whom the alert carrying this tells.
        refused = (f"cleanup not run: cluster {run.cluster} is not in ALLOWED_CLUSTERS; "
                   "check what the step may have left half-done")
        _append_history(platform, run, step, attempt, "cleanup-refused", refused, actor)
        return refused
    try:
        done = spec.on_poison(run, platform)
    except Exception as exc:  # whatever it is, the failure record must stand and a person must know
        log.exception("cleanup of run %s after step %s failed", run.run_id, step)
        _append_history(platform, run, step, attempt, "cleanup-failed", f"{type(exc).__name__}: {exc}", actor)
        platform.alerts.publish(
            Alert(kind="run.cleanup-failed", severity="critical", cluster=run.cluster, pool=run.pool,
                  run_id=run.run_id,
                  summary=f"Run {run.run_id} ended at step {step} and its cleanup failed: {exc}. "
                          "Check what the step may have left half-done.",
                  details={"step": step, "error": str(exc)})
        )
        return f"cleanup failed: {exc}"
    _append_history(platform, run, step, attempt, "cleanup", done, actor)
    return done


def _append_history(platform: Platform, run: RunRecord, step: str, attempt: int, outcome: str, reason: str,
                    actor: str = "system") -> None:
    platform.runs.append_history(
        HistoryEntry(run_id=run.run_id, at=platform.clock.now(), step=step, attempt=attempt,
                     outcome=outcome, reason=reason, actor=actor)
    )
