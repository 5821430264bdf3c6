"""Timer triggers on the dev host fire on their NCRONTAB schedule, resolved from an app setting.

`scan_quarantine` is bound to `%QUARANTINE_SCAN_SCHEDULE%`; with the setting at every second
("*/1 * * * * *", six fields, seconds first) the host must run it again and again by itself, each
time at a whole second the schedule names. The test polls the host's invocation list; it asserts
what ran and when it was due, never how long anything took.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.e2e

EVERY_SECOND = "*/1 * * * * *"
SCHEDULED = "Timer fired at "


def scheduled_runs(host) -> list[dict]:
    return [i for i in host.invocations("scan_quarantine") if i["reason"].startswith(SCHEDULED)]


def finished_scheduled_runs(host) -> list[dict]:
    return [i for i in scheduled_runs(host) if i["succeeded"] is not None]


def test_scan_quarantine_fires_on_the_schedule_its_app_setting_names(start_devhost):
    # GIVEN a dev host whose QUARANTINE_SCAN_SCHEDULE says every second (no cluster to scan)
    host = start_devhost(QUARANTINE_SCAN_SCHEDULE=EVERY_SECOND)

    # WHEN nobody calls the function, and the host runs until three scheduled runs finished
    runs = wait_until(lambda: (found := finished_scheduled_runs(host)) and len(found) >= 3 and found,
                      timeout=30, what="three finished scheduled scan_quarantine runs")

    # THEN the host fired it by itself, successfully, at distinct whole seconds the schedule names
    assert all(run["succeeded"] for run in runs)
    due = [datetime.fromisoformat(run["reason"].removeprefix(SCHEDULED)) for run in runs]
    assert all(moment.microsecond == 0 for moment in due)
    assert due == sorted(set(due))


def test_the_on_demand_schedule_never_fires_by_itself_but_the_admin_api_runs_it(start_devhost):
    # GIVEN a host with the sandbox's default, once-a-year schedule
    host = start_devhost()

    # WHEN the admin endpoint runs the timer function on demand
    status, _ = host.request("POST", "/admin/functions/scan_quarantine", body={"input": ""})
    assert status == 202
    ran = wait_until(lambda: host.invocations("scan_quarantine"), timeout=30, what="the on-demand run")

    # THEN exactly that run happened, with the host's on-demand reason, and no scheduled one
    assert [r["reason"] for r in ran] == ["This function was programmatically called via the host APIs."]
    assert scheduled_runs(host) == []
