"""Every operator command through the app's API on a 60-column terminal and through a pipe.

Against function_app on the dev host with the AKS emulator (per mode, a quarantined seed-pdb
cluster, a seed-bluegreen cluster and a seed-rolling one), the CLI gets only the app's URL and a credential in its environment: no
ARM endpoint or token, no kubeconfigs, no storage connection, no policy, no local.settings.json.
Each subcommand runs with COLUMNS=60, piped and as a terminal (rich's TTY_COMPATIBLE), and every id,
node and pod name it prints must appear whole (never cut to "rollin…").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

from sandbox.aks_emulator.scenarios import seed_bluegreen, seed_pdb, seed_rolling
from sandbox.devhost_config import REPO_ROOT
from sandbox.easy_auth import ADMIN
from tests.e2e.rolling_support import POOL, Sandbox, policy_json, upgrade_outside_the_product
from tests.e2e.test_bluegreen import FAST
from tests.integration.conftest_emulator import FAST_TIME_SCALE
from upgrade.cli.common import ACCESS_TOKEN_ENV
from upgrade.cli.status import API_URL_ENV

pytestmark = pytest.mark.e2e

MODES = {"piped": {}, "terminal": {"TTY_COMPATIBLE": "1", "NO_COLOR": "1"}}


@dataclass
class Stage:
    """One mode's clusters: each mode changes its own (a run, a remediation)."""

    host: object
    pdb: Sandbox  # a seed-pdb cluster after an upgrade outside the product: node 1 quarantined
    bluegreen: object  # a seed-bluegreen EmulatedCluster
    node1: str
    rolling: object  # a seed-rolling EmulatedCluster, whose run looks at AKS every 30 s: time to decide


@pytest.fixture(scope="module")
def stages(start_devhost):
    from azure.mgmt.containerservice import ContainerServiceClient

    from sandbox.aks_emulator.server import Emulator
    from tests.integration.conftest_emulator import StaticTokenCredential, _loopback_bearer_policy

    with Emulator(time_scale=FAST_TIME_SCALE) as emu:
        for mode in MODES:
            for seed, kind in ((seed_pdb, "pdb"), (seed_bluegreen, "bg"), (seed_rolling, "roll")):
                builder = seed()
                builder.name = f"aks-{kind}-{mode}"
                builder.build(emu)
        clusters = {c.name: c for c in emu.clusters()}
        policy = json.loads(policy_json(remediation={"relax-pdb": "approval-required"}))
        policy["clusters"] = {clusters[f"aks-roll-{mode}"].arm_id: {"pollSeconds": 30} for mode in MODES}
        host = start_devhost(emulator=emu, UPGRADE_POLICY=json.dumps(policy))
        credential = StaticTokenCredential(emu.token)
        any_cluster = next(iter(clusters.values()))
        aks = ContainerServiceClient(credential, any_cluster.subscription_id, base_url=emu.arm_url,
                                     authentication_policy=_loopback_bearer_policy(
                                         credential, "https://management.azure.com/.default"),
                                     polling_interval=0.01)
        stages = {}
        for mode in MODES:
            pdb = Sandbox(host, emu, clusters[f"aks-pdb-{mode}"], None)
            assert upgrade_outside_the_product(pdb, aks) == "UpgradeFailed"
            [node1] = pdb.quarantined()
            stages[mode] = Stage(host, pdb, clusters[f"aks-bg-{mode}"], node1, clusters[f"aks-roll-{mode}"])
        try:
            yield stages
        finally:
            aks.close()
            host.stop()


@pytest.fixture(params=sorted(MODES))
def mode(request) -> str:
    return request.param


@pytest.fixture
def stage(stages, mode) -> Stage:
    return stages[mode]


@pytest.fixture
def cli(stage, mode, tmp_path):
    """Run ``python -m upgrade ARGS`` with only the API URL and credential, 60 columns wide."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path), "COLUMNS": "60",
           API_URL_ENV: stage.host.url, ACCESS_TOKEN_ENV: stage.host.token(ADMIN), **MODES[mode]}

    def upgrade(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "upgrade", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (args, done.stderr)
        assert "…" not in done.stdout, done.stdout
        return done.stdout

    return upgrade


def shows_whole(output: str, *names: str) -> bool:
    """Every name appears whole in ``output``: as one token, not cut or split across lines."""
    tokens = set(re.split(r"[\s(),:]+", output))
    return all(name in tokens for name in names)


def test_every_subcommand_prints_whole_ids_on_a_narrow_terminal(stage, cli):
    bluegreen_id = stage.bluegreen.arm_id
    # bluegreen start, then status (list and one run), runs pause / resume / abort
    started = cli("bluegreen", "start", "--cluster", bluegreen_id, "--pool", "blue", "--target-version", "1.31",
                  "--options", json.dumps(FAST), "--approval")
    run_id = re.search(r"^started (\S+):", started, re.MULTILINE).group(1)
    assert shows_whole(cli("status"), run_id)
    assert shows_whole(cli("status", run_id), run_id)
    assert shows_whole(cli("status", run_id, "-o", "wide"), run_id)
    assert json.loads(cli("status", run_id, "-o", "json"))["id"] == run_id
    assert f"id: {run_id}" in cli("status", run_id, "-o", "yaml")
    paused = cli("runs", "pause", run_id, "--reason", "change freeze")
    assert shows_whole(paused, run_id) and "status paused" in paused
    assert shows_whole(cli("runs", "resume", run_id), run_id)
    aborted = cli("runs", "abort", run_id, "--reason", "wrong window")
    assert shows_whole(aborted, run_id) and "status aborted" in aborted

    # runs decisions on a rolling run too
    status, rolling = stage.host.request("POST", "/api/upgrades", body={
        "cluster": stage.rolling.arm_id, "pool": POOL, "targetVersion": "1.31", "strategy": "rolling"})
    assert status == 202, rolling
    paused = cli("runs", "pause", rolling["id"], "--reason", "change freeze")
    assert shows_whole(paused, rolling["id"]) and "status paused" in paused
    assert "status running" in cli("runs", "resume", rolling["id"])
    aborted = cli("runs", "abort", rolling["id"])
    assert shows_whole(aborted, rolling["id"]) and "status aborted" in aborted

    # quarantine scan, list (node, pods and PDBs whole), remediate
    pdb_name = stage.pdb.cluster.name
    assert f"scan queued for {pdb_name}" in cli("quarantine", "scan", "--cluster", pdb_name)
    listed = cli("quarantine", "list")
    findings = json.loads(cli("quarantine", "list", "-o", "json"))
    finding = next(f for f in findings if f["node"] == stage.node1)
    [blocker] = finding["blockers"]
    # (relax-pdb is allowed, the other remediations are off: only relax-pdb carries the app's request)
    offered = {o["kind"]: o for o in finding["options"]}
    assert offered["relax-pdb"]["request"] and offered["relax-pdb"]["policy"] == "approval-required"
    assert [offered[k]["request"] for k in ("delete-pod", "replace-node")] == [None, None]
    assert "delete-pod" in listed and "off in policy" in listed
    assert shows_whole(listed, stage.node1, blocker["pod"], blocker["pdb"], POOL)
    assert shows_whole(cli("quarantine", "list", "-o", "wide"), stage.node1, blocker["pod"])
    remediated = cli("quarantine", "remediate", stage.node1, "--cluster", pdb_name, "--kind", "relax-pdb")
    remediation_id = re.search(r"^started (\S+):", remediated, re.MULTILINE).group(1)
    assert shows_whole(remediated, remediation_id, stage.node1)
    assert shows_whole(cli("status", remediation_id), remediation_id, stage.node1)
    stage.pdb.wait_run(remediation_id, timeout=120)

    # preflight through the app: the blocking pod and the nodes whole
    flight = cli("preflight", "--cluster", pdb_name, "--pool", POOL)
    report = json.loads(cli("preflight", "--cluster", pdb_name, "--pool", POOL, "-o", "json"))
    assert report["nodesToUpgrade"] and shows_whole(flight, *report["quarantinedNodes"], *report["failedNodes"])
    assert "final state:" in flight

