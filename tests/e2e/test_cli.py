"""The operator's command line end to end: ``python -m upgrade status`` and ``python -m upgrade bluegreen
start|approve|rollback|pause|resume|abort`` as subprocesses against function_app on the dev host, with
Azurite and the AKS emulator (one seed-bluegreen cluster per run).

Exit codes are the CLI's contract: 0 done, 1 the app refused or failed (one ``error:`` line on
stderr), 2 bad input.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from sandbox.aks_emulator.scenarios import seed_bluegreen
from sandbox.devhost_config import REPO_ROOT
from sandbox.easy_auth import ADMIN
from tests.e2e.test_bluegreen import APPS, FAST, app_pods, pools, wait_status
from tests.integration.conftest_emulator import FAST_TIME_SCALE
from upgrade.cli.common import ACCESS_TOKEN_ENV
from upgrade.cli.status import API_URL_ENV

pytestmark = pytest.mark.e2e

CLUSTERS = 4  # one per test that takes a fresh cluster, and one the preflight tests only read
STARTED = re.compile(r"^started (\S+): blue -> (\S+) \((\w[\w-]*)\)$", re.MULTILINE)


@pytest.fixture(scope="module")
def cli_sandbox(start_devhost):
    from sandbox.aks_emulator.server import Emulator

    with Emulator(time_scale=FAST_TIME_SCALE) as emu:
        for index in range(CLUSTERS):
            builder = seed_bluegreen()
            builder.name = f"aks-cli-{index}"
            builder.build(emu)
        host = start_devhost(emulator=emu)
        try:
            yield host, iter(emu.clusters())
        finally:
            host.stop()


@pytest.fixture
def cli(cli_sandbox):
    """(run the CLI -> CompletedProcess, the host, a fresh Scenario 3 cluster)."""
    host, fresh = cli_sandbox
    env = {**os.environ, API_URL_ENV: host.url, ACCESS_TOKEN_ENV: host.token(ADMIN), "COLUMNS": "250"}

    def upgrade(*args: str, api: bool = True) -> subprocess.CompletedProcess:
        environ = env if api else {k: v for k, v in env.items() if k not in (API_URL_ENV, ACCESS_TOKEN_ENV)}
        return subprocess.run([sys.executable, "-m", "upgrade", *args], cwd=REPO_ROOT, env=environ,
                              capture_output=True, text=True, timeout=60)

    return upgrade, host, next(fresh)


def _start(upgrade, cluster, *extra: str) -> str:
    done = upgrade("bluegreen", "start", "--cluster", cluster.arm_id, "--pool", "blue", "--target-version", "1.31",
                   "--batch-size", "1", "--options", json.dumps(FAST), *extra)
    assert done.returncode == 0, done.stderr
    started = STARTED.search(done.stdout)
    assert started and started.group(2).startswith("1.31.") and started.group(3) == "running", done.stdout
    assert f"python -m upgrade status {started.group(1)}" in done.stdout
    return started.group(1)


def test_start_status_pause_resume_and_approve_through_the_cli(cli):
    upgrade, host, cluster = cli
    # GIVEN a run started from the CLI that waits for approval
    run_id = _start(upgrade, cluster, "--approval", "--approval-timeout-minutes", "30")
    # WHEN the operator lists runs and shows this one
    listed = upgrade("status")
    shown = upgrade("status", run_id)
    as_json = upgrade("status", run_id, "--json")
    # THEN the list names it, the timeline starts with the operator's start, and --json is the API's record
    assert listed.returncode == 0 and run_id in listed.stdout, listed.stderr
    assert shown.returncode == 0 and "timeline" in shown.stdout and "started" in shown.stdout
    assert ADMIN.actor in shown.stdout and f"acting as {ADMIN.name} (oid {ADMIN.object_id}" in shown.stderr
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["id"] == run_id
    # WHEN paused, paused again (refused), then resumed
    paused = upgrade("bluegreen", "pause", run_id, "--reason", "change freeze")
    again = upgrade("bluegreen", "pause", run_id)
    resumed = upgrade("bluegreen", "resume", run_id)
    assert paused.returncode == 0 and "status paused" in paused.stdout, paused.stderr
    assert again.returncode == 1 and again.stderr.splitlines()[-1].startswith("error:") and "pause does not apply now; you may: rollback, resume, abort" in again.stderr
    assert resumed.returncode == 0 and "paused" not in resumed.stdout.splitlines()[1], resumed.stdout
    # WHEN it waits for the decision and the operator approves
    waiting = wait_status(host, run_id, ("awaiting-decision", "succeeded", "failed", "rolled-back", "aborted"))
    assert waiting["status"] == "awaiting-decision", waiting["reason"]
    approved = upgrade("bluegreen", "approve", run_id, "--reason", "metrics fine")
    assert approved.returncode == 0, approved.stderr
    # THEN the run commits (5A) and the timeline shows every decision
    run = wait_status(host, run_id)
    assert run["status"] == "succeeded", run["reason"]
    assert pools(cluster) == {"system", run["facts"]["greenPool"]}
    decisions = [(d["decision"], d["actor"]) for d in run["facts"]["decisions"]]
    assert decisions == [(d, ADMIN.actor) for d in ("pause", "resume", "approve")]
    final = upgrade("status", run_id)
    assert final.returncode == 0 and "succeeded" in final.stdout and f"approve by {ADMIN.actor}" in final.stdout


def test_rollback_through_the_cli_puts_the_pods_back_on_blue(cli):
    upgrade, host, cluster = cli
    run_id = _start(upgrade, cluster, "--approval")
    waiting = wait_status(host, run_id, ("awaiting-decision", "succeeded", "failed", "rolled-back", "aborted"))
    assert waiting["status"] == "awaiting-decision", waiting["reason"]
    rolled = upgrade("bluegreen", "rollback", run_id, "--reason", "p99 up")
    assert rolled.returncode == 0 and "rollback" in rolled.stdout, rolled.stderr
    run = wait_status(host, run_id)
    assert run["status"] == "rolled-back", run["reason"]
    assert app_pods(cluster) == {app: (("blue", True),) for app in APPS}


def test_abort_and_bad_input_through_the_cli(cli):
    upgrade, _, cluster = cli
    run_id = _start(upgrade, cluster, "--approval")
    # a second start for the same pool: the app answers 409 with the active run's id
    second = upgrade("bluegreen", "start", "--cluster", cluster.arm_id, "--pool", "blue", "--target-version", "1.31")
    assert second.returncode == 1 and f"active run: {run_id}" in second.stderr
    aborted = upgrade("bluegreen", "abort", run_id, "--reason", "wrong window")
    assert aborted.returncode == 0 and "status aborted" in aborted.stdout, aborted.stderr
    shown = upgrade("status", run_id, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "aborted"
    cases = [
        # (arguments, exit code, what stderr names)
        (("bluegreen", "start", "--cluster", cluster.arm_id, "--pool", "blue", "--target-version", "1.29"), 2,
         "targetVersion"),
        (("bluegreen", "start", "--cluster", cluster.arm_id, "--pool", "blue", "--target-version", "1.31",
          "--options", "{nope"), 2, "--options"),
        (("bluegreen", "start", "--cluster", cluster.arm_id, "--pool", "nosuch", "--target-version", "1.31"), 1,
         "pool nosuch not found"),
        (("bluegreen", "resume", run_id), 1, "is aborted"),
        (("status", "bg-nosuch"), 1, "not found"),
        (("bluegreen", "frobnicate", run_id), 2, "invalid choice"),
    ]
    for arguments, code, text in cases:
        done = upgrade(*arguments)
        assert (done.returncode, text in done.stderr) == (code, True), (arguments, done.stderr)
    no_api = upgrade("status", api=False)
    assert no_api.returncode == 2 and API_URL_ENV in no_api.stderr


@pytest.mark.parametrize("target", ["banana", "1.20.0", "1.33.0"])
def test_preflight_of_an_impossible_target_ends_refused_with_exit_2(cli_sandbox, target):
    host, _ = cli_sandbox
    env = {**os.environ, API_URL_ENV: host.url, ACCESS_TOKEN_ENV: host.token(ADMIN), "COLUMNS": "250"}
    allowed = host.app_settings["ALLOWED_CLUSTERS"].split(",")[-1]  # no test takes the last one: blue is intact
    done = subprocess.run([sys.executable, "-m", "upgrade", "preflight", "--cluster", allowed, "--pool", "blue",
                           "--target-version", target], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "final state: Refused" in done.stdout
    assert "offered for pool blue:" in done.stdout
