"""The run's outbox: a run's next message is written with the change that makes it live, then sent.

Every entry point that starts or moves a run (a start, an operator's decision, a remediation
request, an event reaction, a step's transition) puts the message into ``RunRecord.outbox`` in
the same conditional write, and only then sends it. A send that fails, or a host that dies
between the write and the send, loses nothing: the step runner re-sends the outbox for a
redelivered sender, and the reconciler (``services.reconciler``) for a run whose live step did
not run in time.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from upgrade.domain.runs import RunRecord
from upgrade.domain.steps import StepMessage, parse_step_message
from upgrade.errors import InvalidInput, UpgradeError
from upgrade.ports import Platform

log = logging.getLogger("upgrade.outbox")


def outbox_for(message: StepMessage, source: list[Any], *, delay: float = 0.0) -> dict[str, Any]:
    """The outbox holding ``message``; ``source`` says who made it live: ``[step, attempt]`` for a
    step's transition, ``["decision", name]``, ``["start", kind]`` or ``["event", type]``."""
    return {"from": list(source), "message": message.to_json(), "delay": max(0.0, delay)}


def live_message(run: RunRecord) -> StepMessage | None:
    """The run's live message as its outbox holds it; None when the outbox holds none, or holds a
    message that is no longer live (the run moved without writing one)."""
    try:
        message = parse_step_message((run.outbox or {})["message"])
    except (KeyError, TypeError, InvalidInput):
        return None
    return message if (message.step, message.attempt) == (run.state, run.attempt) else None


def send_outbox(platform: Platform, run: RunRecord) -> None:
    """Send the outbox's message with its delay (raises what the queue raises)."""
    if run.outbox:
        platform.queue.send(parse_step_message(run.outbox["message"]), delay_seconds=float(run.outbox.get("delay", 0)))


def send_after_write(platform: Platform, run: RunRecord) -> bool:
    """Send the outbox of a run just written by an entry point. A failed send is logged, not raised:
    the run is recorded with its message, and the reconciler sends it. Returns whether it was sent."""
    try:
        send_outbox(platform, run)
    except UpgradeError as exc:
        log.warning("run %s: its message was written but not sent (%s); the reconciler will send it",
                    run.run_id, exc, extra={"run_id": run.run_id})
        return False
    return True


def create_run(platform: Platform, run: RunRecord, first: StepMessage, *, source: str,
               delay: float = 0.0) -> RunRecord:
    """Create ``run`` (the store's conditional insert: one active run per pool) with ``first`` in its
    outbox, then send it. Raises what ``RunStore.create`` raises; never a failed send."""
    run = platform.runs.create(replace(run, outbox=outbox_for(first, ["start", source], delay=delay), etag=None))
    send_after_write(platform, run)
    return run
