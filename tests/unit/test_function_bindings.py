"""Every function's trigger, queue, route and auth level, as the host reads them from app.get_functions().

Infra (Event Grid subscriptions name functions), the poison-queue wiring and operators' scripts
depend on these names, so a rename must fail here first.
"""

from __future__ import annotations

import json
from functools import cache

import pytest

import function_app
from upgrade.storage_names import POISON_QUEUE, STEP_QUEUE


@cache
def bindings_by_function() -> dict[str, list[dict]]:
    # azure-functions remembers indexed names on the app and refuses a second get_functions() ("not a
    # unique function name"). The worker indexes once per process; tests index in several modules, so
    # the memo is cleared around this call.
    function_app.app.functions_bindings = {}
    try:
        return {
            f.get_function_name(): [json.loads(raw) for raw in f.get_raw_bindings()]
            for f in function_app.app.get_functions()
        }
    finally:
        function_app.app.functions_bindings = {}


def trigger_of(name: str) -> dict:
    return next(b for b in bindings_by_function()[name] if b["type"].endswith("Trigger"))


FUNCTIONS = {
    "on_aks_event", "run_step", "on_poison_step", "scan_quarantine",
    "start_upgrade", "decide_upgrade", "list_upgrades", "get_upgrade",
    "remediate_quarantined_node", "list_quarantine", "scan_quarantine_now", "preflight_upgrade",
    "reconcile_runs", "start_rollout", "list_rollouts", "get_rollout", "decide_rollout",
    "get_upgrade_nodes", "get_me", "console_files",
}


def test_the_app_registers_exactly_the_documented_functions():
    # GIVEN function_app WHEN the host indexes it THEN exactly these functions exist: a new or
    # renamed function must be added here (and to infra's Event Grid / alert wiring) on purpose.
    assert set(bindings_by_function()) == FUNCTIONS


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("on_aks_event", {"type": "eventGridTrigger", "direction": "IN"}),
        ("run_step", {"type": "queueTrigger", "queueName": "upgrade-steps", "connection": "AzureWebJobsStorage"}),
        ("on_poison_step", {"type": "queueTrigger", "queueName": "upgrade-steps-poison",
                            "connection": "AzureWebJobsStorage"}),
        ("scan_quarantine", {"type": "timerTrigger", "schedule": "%QUARANTINE_SCAN_SCHEDULE%",
                             "runOnStartup": False}),
        ("reconcile_runs", {"type": "timerTrigger", "schedule": "%RUN_RECONCILE_SCHEDULE%",
                            "runOnStartup": False}),
        ("start_upgrade", {"type": "httpTrigger", "route": "upgrades", "methods": ["POST"],
                           "authLevel": "ANONYMOUS"}),
        ("list_upgrades", {"type": "httpTrigger", "route": "upgrades", "methods": ["GET"],
                           "authLevel": "ANONYMOUS"}),
        ("get_upgrade", {"type": "httpTrigger", "route": "upgrades/{run_id}", "methods": ["GET"],
                         "authLevel": "ANONYMOUS"}),
        ("decide_upgrade", {"type": "httpTrigger", "route": "upgrades/{run_id}/{decision}", "methods": ["POST"],
                            "authLevel": "ANONYMOUS"}),
        ("list_quarantine", {"type": "httpTrigger", "route": "quarantine", "methods": ["GET"],
                             "authLevel": "ANONYMOUS"}),
        ("remediate_quarantined_node", {"type": "httpTrigger", "route": "quarantine/{cluster}/{node}/remediate",
                                        "methods": ["POST"], "authLevel": "ANONYMOUS"}),
        ("scan_quarantine_now", {"type": "httpTrigger", "route": "quarantine/scan", "methods": ["POST"],
                                 "authLevel": "ANONYMOUS"}),
        ("get_upgrade_nodes", {"type": "httpTrigger", "route": "upgrades/{run_id}/nodes", "methods": ["GET"],
                               "authLevel": "ANONYMOUS"}),
        ("get_me", {"type": "httpTrigger", "route": "me", "methods": ["GET"], "authLevel": "ANONYMOUS"}),
        ("console_files", {"type": "httpTrigger", "route": "console/{file?}", "methods": ["GET"],
                           "authLevel": "ANONYMOUS"}),
        ("preflight_upgrade", {"type": "httpTrigger", "route": "upgrades/preflight", "methods": ["POST"],
                               "authLevel": "ANONYMOUS"}),
        ("start_rollout", {"type": "httpTrigger", "route": "rollouts", "methods": ["POST"], "authLevel": "ANONYMOUS"}),
        ("list_rollouts", {"type": "httpTrigger", "route": "rollouts", "methods": ["GET"], "authLevel": "ANONYMOUS"}),
        ("get_rollout", {"type": "httpTrigger", "route": "rollouts/{rollout_id}", "methods": ["GET"],
                         "authLevel": "ANONYMOUS"}),
        ("decide_rollout", {"type": "httpTrigger", "route": "rollouts/{rollout_id}/{decision}", "methods": ["POST"],
                            "authLevel": "ANONYMOUS"}),
    ],
    ids=lambda v: v if isinstance(v, str) else v["type"],
)
def test_each_function_has_its_trigger(function, expected):
    # GIVEN a function WHEN its trigger binding is read THEN type, queue/schedule/route, methods and
    # auth level are exactly the documented ones
    trigger = trigger_of(function)
    assert {k: trigger.get(k) for k in expected} == expected


def test_http_routes_live_under_upgrades_quarantine_rollouts_or_me_and_need_no_function_key():
    # Every HTTP route with data is an operator action on runs, stuck nodes or rollouts, or who the
    # caller is, guarded by App Service authentication (infra) and the route's app role
    # (http_common.caller), not by a function key. The console's static files hold no data.
    http = {name: trigger_of(name) for name, bindings in bindings_by_function().items()
            if any(b["type"] == "httpTrigger" for b in bindings) and name != "console_files"}
    assert http, "at least GET /api/upgrades/{run_id}"
    for name, trigger in http.items():
        assert trigger["route"].split("/")[0] in {"upgrades", "quarantine", "rollouts", "me"}, name
        assert trigger["authLevel"] == "ANONYMOUS", name


def test_the_queue_adapter_sends_where_run_step_listens():
    assert trigger_of("run_step")["queueName"] == STEP_QUEUE
    assert trigger_of("on_poison_step")["queueName"] == POISON_QUEUE == f"{STEP_QUEUE}-poison"
