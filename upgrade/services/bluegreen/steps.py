"""The blue-green step registry: every state of the transition table that does work, its handler,
the args its live message may carry, and what a permanent error or a poisoned step leads to."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from upgrade.domain.bluegreen import (
    TransitionNotAllowed,
    cleanup_left,
)
from upgrade.domain.runs import RunRecord
from upgrade.domain.steps import Done, Outcome
from upgrade.errors import InvalidInput, PermanentError
from upgrade.ports import Platform
from upgrade.services.bluegreen.cutover import (
    await_decision,
    batch_soak,
    commit,
    cordon_blue,
    drain_batch,
    final_soak,
    validate,
)
from upgrade.services.bluegreen.flow import (
    STEP_PREFIX,
    NotOwned,
    advance,
    carried_drain,
    fail_here,
    failed_with_alert,
    run_alert,
)
from upgrade.services.bluegreen.prepare import create_green, preflight, wait_green_ready
from upgrade.services.bluegreen.rollback import (
    delete_green,
    drain_green,
    rollback,
    uncordon_blue,
    wait_green_deleted,
)
from upgrade.services.registry import StepSpec
from upgrade.services.step_runner import StepContext

STEP_ARGS: dict[str, tuple[str, ...]] = {"drain_batch": ("drain",), "drain_green": ("drain",), "validate": ("since",)}


def check_step_args(step: str, args: Mapping[str, Any]) -> None:
    """Refuse args a step does not take or cannot read, naming the field (InvalidInput)."""
    allowed = STEP_ARGS.get(step, ())
    for key in args:
        if key not in allowed:
            raise InvalidInput("step message", f"args.{key}",
                               f"not an argument of step {step} (it takes: {', '.join(allowed) or 'none'})")
    since = args.get("since")
    if since is not None:
        try:
            if not isinstance(since, str) or datetime.fromisoformat(since).tzinfo is None:
                raise ValueError(since)
        except ValueError:
            raise InvalidInput("step message", "args.since", "must be an ISO 8601 time with a UTC offset") from None
    drain = args.get("drain")
    if drain is not None:
        try:
            carried_drain(drain)
        except (TypeError, ValueError, AttributeError) as exc:
            raise InvalidInput("step message", "args.drain", f"not a drain progress: {exc}") from None


def _guarded(step: str, handler: Callable[[StepContext], Outcome]) -> Callable[[StepContext], Outcome]:
    """``handler`` as the registry runs it. A permanent error in the step (a refused API call, a
    live message whose args it cannot read, an event the table lacks) becomes the table's ``error``
    event, so the run rolls back or fails with an alert as the table says; where the table has no
    way out (done, failed) or cannot be consulted (unreadable options), the run fails here with the
    alert. Transient errors stay Retries."""

    def run_guarded(ctx: StepContext) -> Outcome:
        facts: dict[str, Any] = {}
        try:
            check_step_args(step, ctx.message.args)
            return handler(ctx)
        except NotOwned as exc:
            reason = f"{step}: {exc}"
            facts["notOwned"] = sorted({*(ctx.run.facts.get("notOwned") or ()), exc.pool}) if ctx.run else [exc.pool]
            run_alert(ctx, "pool.not-owned", "error", f"{exc}", refusedPool=exc.pool, step=step)
        except (InvalidInput, PermanentError) as exc:
            reason = f"{step}: {exc}"
        try:
            return advance(ctx, "error", reason=reason,
                           facts={**facts, "rollbackAfterFailure": True, "rollbackCause": reason})
        except TransitionNotAllowed:
            return fail_here(ctx, reason, facts)
        except (InvalidInput, PermanentError) as exc:
            return fail_here(ctx, f"{reason}; the transition table could not be consulted: {exc}", facts)

    run_guarded.__name__ = handler.__name__
    return run_guarded


def done(ctx: StepContext) -> Outcome:
    run = ctx.run
    assert run is not None
    rolled_back = bool(run.facts.get("rolledBack"))
    status = "rolled-back" if rolled_back else "succeeded"
    summary = run.reason or status
    run_alert(ctx, f"run.{status}", "warning" if rolled_back else "info", summary)
    return Done(summary=summary, status=status)


def failed(ctx: StepContext) -> Outcome:
    run = ctx.run
    assert run is not None
    reason = run.facts.get("failure") or run.reason or "failed"
    if run.facts.get("rolledBack"):
        reason = f"{run.facts.get('rollbackCause', reason)}; rolled back: workloads on blue, green deleted"
    return failed_with_alert(ctx, reason, run.facts.get("failedIn") or "")


_HANDLERS: dict[str, Callable[[StepContext], Outcome]] = {
    "preflight": preflight,
    "create_green": create_green,
    "wait_green_ready": wait_green_ready,
    "cordon_blue": cordon_blue,
    "drain_batch": drain_batch,
    "batch_soak": batch_soak,
    "validate": validate,
    "final_soak": final_soak,
    "await_decision": await_decision,
    "commit": commit,
    "rollback": rollback,
    "uncordon_blue": uncordon_blue,
    "drain_green": drain_green,
    "delete_green": delete_green,
    "wait_green_deleted": wait_green_deleted,
    "done": done,
    "failed": failed,
}


def leftovers_after_poison(run: RunRecord, platform: Platform) -> str:
    """Poison hook: a step that kept crashing has left the cluster in a state no step can vouch for,
    so nothing is undone automatically; the poison alert names what the run may have left instead."""
    state = run.state.removeprefix(STEP_PREFIX)
    if state == "failed":  # the failed step itself crashed: what is left depends on where the run failed
        state = run.facts.get("failedIn") or state
    left = cleanup_left(state, run.facts, run.pool or "")
    return ("nothing undone automatically; left to clean up: " + "; ".join(left)) if left else "nothing to clean up"


STEPS: dict[str, StepSpec] = {
    STEP_PREFIX + name: StepSpec(STEP_PREFIX + name, _guarded(name, handler), on_poison=leftovers_after_poison)
    for name, handler in _HANDLERS.items()
}
