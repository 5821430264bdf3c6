"""Executes one step message: the at-least-once, crash-safe loop every workflow runs on.

Protocol for a step bound to a run (``StepSpec.needs_run``):

1. The run says which message is live: ``(run.state, run.attempt)``. Any other message for the
   run is stale (a duplicate, or overtaken by an operator's decision) and is dropped, except
   that a redelivered message whose transition was written but maybe not sent re-sends the
   run's ``outbox`` (the host died between the state write and the send).
2. The worker claims the live step with an ETag-conditional write. A second copy arriving while
   the claim holds is put back with a delay; once the first copy's transition lands it is stale.
   A claim whose worker died expires after the step's lease.
3. The handler runs and returns an Outcome; expected failures come back as errors translated
   to Retry (TemporaryError) or Failed (PermanentError). An unexpected exception is left to the
   host: the message is redelivered and after maxDequeueCount lands in the poison queue, which
   ``on_poison_step`` watches (``services.run_failures``): it fails the run, then runs the
   workflow's ``on_poison`` cleanup.
4. The transition (next state, attempt, facts, status, outbox) is one conditional write; then the
   next message is sent; then a history row records the attempt. A run that ends Failed raises
   a ``run.failed`` alert unless its workflow raised its own (``Failed.alerted``).

A transient storage error (throttling, a 5xx, a timeout: TemporaryError from the run store or
the queue) on any of these writes is not the host's business: the executor puts the same
delivery back with a growing delay (``storage_retry`` counts them) and returns, so throttling
never uses up the host's maxDequeueCount and never poisons a live run. Only when the put-back
itself fails does the error reach the host, which redelivers the message. A run whose message
is lost all the same is found by the reconciler (``services.reconciler``).

Invalid messages and unknown steps never reach a handler or a run: they are logged with what
is wrong and moved straight to the poison queue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from upgrade.domain.model import ClusterRef, is_allowed_cluster
from upgrade.domain.runs import FINAL_STATUSES, PARKED_STATUSES, HistoryEntry, RunRecord
from upgrade.domain.steps import (
    Done,
    Failed,
    Next,
    Outcome,
    Retry,
    StepMessage,
    outcome_label,
    parse_step_message,
)
from upgrade.errors import Conflict, InvalidInput, NotFound, PermanentError, TemporaryError
from upgrade.ports import Platform
from upgrade.services.holds import hold_gate
from upgrade.services.outbox import outbox_for, send_outbox
from upgrade.services.registry import StepSpec, step_registry
from upgrade.services.run_failures import alert_failed, fail_run, fail_run_if_active
from upgrade.services.windows import gate

if TYPE_CHECKING:
    from upgrade.domain.alerts import Alert

log = logging.getLogger("upgrade.steps")

# A Retry never comes back sooner than this: the queue's visibility granularity is a second.
MIN_RETRY_SECONDS = 1.0
# Backoff of a delivery put back after a transient storage error: base * 2**n, capped. The
# storage SDKs have already retried the request itself a few times before the error reaches here.
STORAGE_RETRY_BASE_SECONDS = 1.0
STORAGE_RETRY_MAX_SECONDS = 300.0
# After this many put-backs (hours of throttling at the cap) the error goes to the host, whose
# redeliveries end in the poison queue: the run is failed and alerted on, never left silent.
MAX_STORAGE_RETRIES = 40


def storage_backoff(retry: int) -> float:
    """Seconds before the ``retry``-th put-back of a delivery (1-based)."""
    return min(STORAGE_RETRY_MAX_SECONDS, STORAGE_RETRY_BASE_SECONDS * 2 ** max(0, retry - 1))


@dataclass(frozen=True)
class StepContext:
    message: StepMessage
    platform: Platform
    run: RunRecord | None  # None for stateless steps

    @property
    def cluster(self) -> ClusterRef:
        return self.message.cluster_ref


@dataclass(frozen=True)
class StepReport:
    """What happened to one delivery, for the trigger's log line and for tests."""

    step: str
    run_id: str | None
    result: str  # executed | stale | resent | deferred | poisoned | refused | storage-retry
    outcome: Outcome | None = None
    detail: str = ""


def run_step_message(
    body: str | bytes, platform: Platform, *, message_id: str, dequeue_count: int = 1
) -> StepReport:
    """Execute one queue delivery. Raises only for unexpected errors (the host retries those)."""
    try:
        message = parse_step_message(body)
        spec = step_registry().get(message.step)
        if spec is None:
            raise InvalidInput("step message", "step", f"unknown step {message.step!r}")
    except InvalidInput as exc:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        log.error("step message refused, moved to poison: %s; body=%.500s", exc, text)
        platform.queue.send_to_poison(text)
        return StepReport(step="?", run_id=None, result="poisoned", detail=str(exc))
    try:
        if not is_allowed_cluster(message.cluster, platform.allowed_clusters):
            reason = f"cluster {message.cluster} is not in ALLOWED_CLUSTERS: refusing to act on it"
            log.error("step %s of run %s refused: %s", message.step, message.run_id, reason)
            fail_run_if_active(platform, message, reason)
            return StepReport(message.step, message.run_id, "refused", detail=reason)
        if not spec.needs_run:
            outcome = _execute(spec, StepContext(message, platform, None))
            _send_follow_up(platform, message, outcome)
            _log_outcome(message, outcome, dequeue_count)
            return StepReport(message.step, message.run_id, "executed", outcome)
        return _run_bound_step(spec, message, platform, message_id=message_id, dequeue_count=dequeue_count)
    except TemporaryError as exc:
        return _put_back(platform, message, exc)


def _put_back(platform: Platform, message: StepMessage, exc: TemporaryError) -> StepReport:
    """The same delivery again later, with backoff: a transient storage error is the step's own
    retry, not the host's. Raises (to the host) when the put-back fails too, or after
    MAX_STORAGE_RETRIES."""
    retry = message.storage_retry + 1
    if retry > MAX_STORAGE_RETRIES:
        log.error("step %s#%d of run %s: storage still failing after %d put-backs: %s",
                  message.step, message.attempt, message.run_id, message.storage_retry, exc)
        raise exc
    delay = storage_backoff(retry)
    platform.queue.send(message.model_copy(update={"storage_retry": retry}), delay_seconds=delay)
    log.warning("step %s#%d of run %s: transient storage error, put back for %.0fs (retry %d): %s",
                message.step, message.attempt, message.run_id, delay, retry, exc,
                extra={"run_id": message.run_id, "step": message.step, "storage_retry": retry})
    return StepReport(message.step, message.run_id, "storage-retry", detail=str(exc))


def _run_bound_step(
    spec: StepSpec, message: StepMessage, platform: Platform, *, message_id: str, dequeue_count: int
) -> StepReport:
    clock, runs = platform.clock, platform.runs
    while True:
        try:
            run = runs.get(message.run_id)
        except NotFound:
            log.error("step %s names run %s, which does not exist: dropped", message.step, message.run_id)
            return StepReport(message.step, message.run_id, "stale", detail="no such run")
        if run.status in FINAL_STATUSES:
            return StepReport(message.step, run.run_id, "stale", detail=f"run is {run.status}")
        if (run.state, run.attempt) != (message.step, message.attempt):
            return _stale_or_resend(platform, run, message)
        if run.status in PARKED_STATUSES:
            # Parked (paused, stuck): the step stays live and is re-run by resume; this copy is not needed.
            return StepReport(message.step, run.run_id, "stale", detail=f"run is {run.status}")
        now = clock.now()
        claim = run.claim
        if claim and claim.get("message_id") != message_id and claim.get("until", "") > now.isoformat():
            platform.queue.send(message, delay_seconds=spec.lease_seconds / 4)
            return StepReport(message.step, run.run_id, "deferred", detail="another worker holds the step")
        claimed = run.evolve(
            now=now,
            claim={"message_id": message_id, "until": (now + timedelta(seconds=spec.lease_seconds)).isoformat()},
        )
        try:
            run = runs.update(claimed)
        except Conflict:
            continue  # the run moved under us: look again
        break

    ctx = StepContext(message, platform, run)
    outcome = _execute(spec, ctx, gated=True)
    try:
        transitioned = _write_transition(platform, run, message, outcome)
    except TemporaryError:
        # The step acted; its transition did not land. The put-back copy runs the idempotent step
        # again, which the claim would hold off for a lease: release it (best effort).
        _release_claim(platform, run)
        raise
    except NotFound:
        return StepReport(message.step, run.run_id, "stale", outcome, detail="the run was deleted during the step")
    except Conflict:
        # An operator decision (pause, rollback, abort) or another worker moved the run while the
        # step ran. Its side effects are idempotent; the run's new state decides what happens next.
        current = runs.get(run.run_id)
        log.warning(
            "step %s of run %s finished but the run moved to %s/%s meanwhile: outcome %s not applied",
            message.step, run.run_id, current.state, current.status, outcome_label(outcome),
        )
        return StepReport(message.step, run.run_id, "stale", outcome, detail="run moved during the step")
    except PermanentError as exc:
        # The store refused the transition for good (a record over Table storage's limits): the
        # run fails with that reason, through the same path as a poisoned step.
        log.error("step %s of run %s: transition refused by the store: %s", message.step, run.run_id, exc)
        fail_run(platform, message, f"step {message.step}#{message.attempt} could not record its outcome: {exc}",
                 outcome="refused")
        return StepReport(message.step, run.run_id, "refused", outcome, detail=str(exc))
    try:
        send_outbox(platform, transitioned)
        unsent = None
    except TemporaryError as exc:
        unsent = exc  # the put-back copy finds the transition written and re-sends the outbox
    entry = HistoryEntry(run_id=run.run_id, at=clock.now(), step=message.step, attempt=message.attempt,
                         outcome=outcome_label(outcome), reason=_reason(outcome), actor=message.actor)
    try:
        runs.append_history(entry)
    except TemporaryError as exc:
        # The transition and its message stand; re-running the step for a history row would not.
        log.error("history of run %s not written (%s): %s#%d %s %s", run.run_id, exc, entry.step,
                  entry.attempt, entry.outcome, entry.reason)
    if isinstance(outcome, Failed) and not outcome.alerted:
        alert_failed(platform, transitioned, message, outcome.reason)
    _log_outcome(message, outcome, dequeue_count)
    if unsent is not None:
        return _put_back(platform, message, unsent)
    return StepReport(message.step, run.run_id, "executed", outcome)


def _release_claim(platform: Platform, run: RunRecord) -> None:
    try:
        platform.runs.update(run.evolve(now=platform.clock.now(), claim=None))
    except (TemporaryError, Conflict) as exc:
        log.warning("claim of run %s not released (%s): a later copy waits for it to expire", run.run_id, exc)


class _StepAlerts:
    """The alert sink as a step sees it: each alert names the step's run, step and attempt, so a
    retried or redelivered step publishes the same alert under the same id (Alert.event_id)."""

    def __init__(self, sink: Any, message: StepMessage) -> None:
        self._sink, self._message = sink, message

    def publish(self, alert: Alert) -> bool:
        return self._sink.publish(replace(alert, run_id=alert.run_id or self._message.run_id,
                                          step=alert.step or self._message.step,
                                          attempt=alert.attempt or self._message.attempt))


class _StepPlatform:
    """The platform with the step's alert sink; everything else is the platform's own."""

    def __init__(self, platform: Platform, message: StepMessage) -> None:
        self._platform = platform
        self.alerts = _StepAlerts(platform.alerts, message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._platform, name)


def _execute(spec: StepSpec, ctx: StepContext, *, gated: bool = False) -> Outcome:
    """The step's outcome; ``gated``: a cluster-changing step waits for its maintenance window and a
    drain for its nodes' holds first (a read those checks make fails like the step's own)."""
    ctx = replace(ctx, platform=_StepPlatform(ctx.platform, ctx.message))
    try:
        if gated:
            return gate(ctx, lambda: hold_gate(ctx, lambda: spec.handler(ctx)))
        return spec.handler(ctx)
    except TemporaryError as exc:
        return Retry(delay_seconds=max(MIN_RETRY_SECONDS, exc.delay_seconds), reason=str(exc))
    except PermanentError as exc:
        return Failed(reason=str(exc))


def _next_message(message: StepMessage, outcome: Outcome) -> StepMessage | None:
    if isinstance(outcome, Next):
        return message.model_copy(update={
            "step": outcome.step, "attempt": 1, "storage_retry": 0,
            "args": outcome.args if outcome.args is not None else message.args})
    if isinstance(outcome, Retry):
        return message.model_copy(update={
            "attempt": message.attempt + 1, "storage_retry": 0,
            "args": outcome.args if outcome.args is not None else message.args})
    return None


def _delay(outcome: Outcome) -> float:
    if isinstance(outcome, (Next, Retry)):
        return max(0.0, outcome.delay_seconds)
    return 0.0


def _write_transition(platform: Platform, run: RunRecord, message: StepMessage, outcome: Outcome) -> RunRecord:
    now = platform.clock.now()
    follow_up = _next_message(message, outcome)
    outbox = outbox_for(follow_up, [message.step, message.attempt], delay=_delay(outcome)) if follow_up else None
    changes: dict = {"claim": None, "outbox": outbox, "facts": outcome.facts}
    if follow_up:
        changes.update(state=follow_up.step, attempt=follow_up.attempt)
    if isinstance(outcome, Next):
        changes.update(status=outcome.status, reason=outcome.reason or run.reason)
    elif isinstance(outcome, Retry):
        changes.update(reason=outcome.reason, status=outcome.status or run.status)
    elif isinstance(outcome, Done):
        changes.update(status=outcome.status, reason=outcome.summary)
    elif isinstance(outcome, Failed):
        changes.update(status=outcome.status, reason=outcome.reason)
    return platform.runs.update(run.evolve(now=now, **changes))


def _stale_or_resend(platform: Platform, run: RunRecord, message: StepMessage) -> StepReport:
    outbox = run.outbox or {}
    if outbox.get("from") == [message.step, message.attempt]:
        # This delivery's transition is written but its send may have been lost in a crash:
        # send again; a duplicate is dropped as stale or deferred by the claim.
        send_outbox(platform, run)
        return StepReport(message.step, run.run_id, "resent", detail="re-sent the transition's message")
    return StepReport(
        message.step, run.run_id, "stale",
        detail=f"run expects {run.state}#{run.attempt}, got {message.step}#{message.attempt}",
    )


def _send_follow_up(platform: Platform, message: StepMessage, outcome: Outcome) -> None:
    follow_up = _next_message(message, outcome)
    if follow_up:
        platform.queue.send(follow_up, delay_seconds=_delay(outcome))


def _reason(outcome: Outcome) -> str:
    if isinstance(outcome, Done):
        return outcome.summary
    return outcome.reason


def _log_outcome(message: StepMessage, outcome: Outcome, dequeue_count: int) -> None:
    log.info(
        "step %s#%d of run %s on %s: %s %s",
        message.step, message.attempt, message.run_id, message.cluster, outcome_label(outcome), _reason(outcome),
        extra={"run_id": message.run_id, "step": message.step, "outcome": outcome_label(outcome),
               "dequeue_count": dequeue_count},
    )
