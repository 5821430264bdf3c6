"""Maintenance windows end to end: a blue-green run on the dev host (function_app, Azurite, the AKS
emulator) started outside its window waits and says when it will start; the window closing after
the first drain batch pauses it between batches; it resumes in the next window and ends done, its
history showing both waits.

The windows are the policy's own (minute-granular, in UTC) and placed relative to the wall clock
the app reads, so this test waits for real minutes (about six; marked ``waits``, so ``make test``
starts it first and the other files run meanwhile).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.aks_emulator.scenarios import seed_bluegreen
from tests.e2e.conftest import wait_until
from tests.e2e.test_bluegreen import FAST, app_pods, pools, wait_status
from tests.integration.conftest_emulator import FAST_TIME_SCALE

pytestmark = [pytest.mark.e2e, pytest.mark.waits]


def _daily(start: datetime, minutes: int) -> dict:
    return {"schedule": {"daily": {"intervalDays": 1}}, "startTime": start.strftime("%H:%M"),
            "durationMinutes": minutes, "timeZone": "UTC"}


def test_a_run_waits_for_its_window_pauses_between_batches_when_it_closes_and_resumes(start_devhost):
    from sandbox.aks_emulator.server import Emulator

    now = datetime.now(UTC)
    # the first window opens at a minute boundary 20-80 s from now and lasts 2 minutes; the second
    # opens a minute after the first closes
    first = (now + timedelta(seconds=80)).replace(second=0, microsecond=0)
    second = first + timedelta(minutes=3)
    policy = {"defaults": {"maintenance": {"windows": {"early": _daily(first, 2), "later": _daily(second, 10)},
                                           "default": ["early", "later"]}}}
    with Emulator(time_scale=FAST_TIME_SCALE) as emu:
        seed_bluegreen().build(emu)
        (cluster,) = emu.clusters()
        host = start_devhost(emulator=emu, UPGRADE_POLICY=json.dumps(policy))
        try:
            status, body = host.request("POST", "/api/upgrades", body={
                "cluster": cluster.arm_id, "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green",
                # batch 2 starts two minutes after batch 1 drained: after the first window closed
                "options": {**FAST, "batchSoakMinutes": 2}, "actor": "e2e"})
            assert status == 202, body
            run_id = body["id"]
            opens = first.strftime("%Y-%m-%dT%H:%M:%SZ")

            def waiting():
                run = host.request("GET", f"/api/upgrades/{run_id}")[1]
                return run if run["reason"].startswith("waiting for window") else None

            # THEN the run waits, and its status says when it will start
            run = wait_until(waiting, timeout=30, interval=0.3, what="the run to wait for its window")
            assert run["reason"] == f"waiting for window, opens at {opens} (early)"
            assert (run["status"], run["state"]) == ("running", "bluegreen.preflight")
            assert set(pools(cluster)) == {"system", "blue"}  # nothing created before the window

            final = wait_status(host, run_id, timeout=420)
            assert final["status"] == "succeeded", final["reason"]
            green = final["facts"]["greenPool"]
            assert pools(cluster) == {"system", green}
            assert all(where == ((green, True),) for where in app_pods(cluster).values())
            waits = final["facts"]["windowWaits"]
            assert [w["step"] for w in waits] == ["bluegreen.preflight", "bluegreen.drain_batch"]
            assert [w["opensAt"] for w in waits] == [first.isoformat(), second.isoformat()]
            timeline = final["timeline"]
            waited = [(r["step"], r["reason"]) for r in timeline if r["reason"].startswith("waiting for window")]
            assert ("bluegreen.preflight", f"waiting for window, opens at {opens} (early)") in waited
            assert ("bluegreen.drain_batch",
                    f"waiting for window, opens at {second.strftime('%Y-%m-%dT%H:%M:%SZ')} (later)") in waited
            # no batch was cut: the first drained inside the first window, the second inside the second
            drained = [datetime.fromisoformat(r["at"]) for r in timeline
                       if r["step"] == "bluegreen.drain_batch" and r["outcome"] == "next"]
            assert len(drained) == 2
            assert first <= drained[0] < first + timedelta(minutes=2) and drained[1] >= second
        finally:
            host.stop()
