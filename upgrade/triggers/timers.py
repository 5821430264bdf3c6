"""Timer triggers: the quarantine scan fan-out (``scan_quarantine``) and the run reconciler
(``reconcile_runs``, which also looks again at the Fleet gates left Pending)."""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("upgrade.triggers.timers")


@bp.function_name("scan_quarantine")
@bp.timer_trigger(arg_name="timer", schedule="%QUARANTINE_SCAN_SCHEDULE%", run_on_startup=False, use_monitor=True)
def scan_quarantine(timer: func.TimerRequest) -> None:
    from upgrade.services.quarantine_scan import fan_out_scans
    from upgrade.wiring import platform

    if timer.past_due:
        log.warning("scan_quarantine is running late (past due)")
    clusters = fan_out_scans(platform())
    log.info("scan_quarantine: enqueued %d cluster scans", len(clusters))


@bp.function_name("reconcile_runs")
@bp.timer_trigger(arg_name="timer", schedule="%RUN_RECONCILE_SCHEDULE%", run_on_startup=False, use_monitor=True)
def reconcile_runs(timer: func.TimerRequest) -> None:
    from upgrade.services.fleet_gates import recheck_blocked_gates
    from upgrade.services.reconciler import reconcile_runs as reconcile
    from upgrade.settings import current_settings
    from upgrade.wiring import platform

    notes = reconcile(platform(), margin_seconds=current_settings().run_reconcile_margin_seconds)
    log.info("reconcile_runs: %d run(s) acted on", len(notes))
    for outcome in recheck_blocked_gates(platform()):
        log.info("reconcile_runs: Fleet gate looked at again: %s", outcome)
