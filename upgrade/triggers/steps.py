"""Queue triggers: ``run_step`` executes step messages, ``on_poison_step`` watches the poison queue."""

from __future__ import annotations

import logging

import azure.functions as func

from upgrade.storage_names import POISON_QUEUE, STEP_QUEUE, STORAGE_CONNECTION

bp = func.Blueprint()
log = logging.getLogger("upgrade.triggers.steps")


@bp.function_name("run_step")
@bp.queue_trigger(arg_name="msg", queue_name=STEP_QUEUE, connection=STORAGE_CONNECTION)
def run_step(msg: func.QueueMessage) -> None:
    from upgrade.services.step_runner import run_step_message
    from upgrade.wiring import platform

    report = run_step_message(
        msg.get_body(), platform(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1
    )
    log.info("run_step: %s %s %s %s", report.step, report.run_id, report.result, report.detail)


@bp.function_name("on_poison_step")
@bp.queue_trigger(arg_name="msg", queue_name=POISON_QUEUE, connection=STORAGE_CONNECTION)
def on_poison_step(msg: func.QueueMessage) -> None:
    from upgrade.services.run_failures import record_poisoned_step
    from upgrade.wiring import platform

    record_poisoned_step(msg.get_body().decode("utf-8", "replace"), platform())
