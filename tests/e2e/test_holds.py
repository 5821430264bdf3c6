"""Application holds end to end on the dev host: a node of Scenario 3's blue pool carries the hold
annotation (set with real kubectl, as an application's operator would); the blue-green run drains
the other node, waits on the held one with "held: …" in its status and leaves its pods where they
are; once the annotation is removed the run drains it and ends done."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.aks_emulator.scenarios import seed_bluegreen
from tests.e2e.conftest import wait_until
from tests.e2e.test_bluegreen import FAST, app_pods, pools, wait_status
from upgrade.domain.holds import HOLD_ANNOTATION, HOLD_BY_ANNOTATION

pytestmark = pytest.mark.e2e

KUBECTL = Path(sys.executable).parent / "kubectl"  # the pinned kubectl the sandbox tests use


def kubectl(kubeconfig: Path, *args: str) -> None:
    subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], check=True, capture_output=True, text=True,
                   timeout=30)


def test_a_held_node_is_not_drained_until_the_hold_is_removed_then_the_run_goes_on(emulator, start_devhost, tmp_path):
    emu = emulator(seed_bluegreen())
    (cluster,) = emu.clusters()
    kubeconfig = tmp_path / "kubeconfig"
    emu.write_kubeconfig(cluster.arm_id, kubeconfig)
    held = sorted(n["metadata"]["name"] for n in cluster.kube.nodes("blue"))[-1]
    kubectl(kubeconfig, "annotate", "node", held, f"{HOLD_ANNOTATION}=quarterly ledger close",
            f"{HOLD_BY_ANNOTATION}=team-finance")
    host = start_devhost(emulator=emu, UPGRADE_POLICY=json.dumps({"defaults": {"pollSeconds": 1}}))
    pods_on_held = {p["metadata"]["name"] for p in cluster.kube.pods() if p["spec"].get("nodeName") == held}
    status, body = host.request("POST", "/api/upgrades", body={
        "cluster": cluster.arm_id, "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green",
        "options": FAST, "actor": "e2e"})
    assert status == 202, body
    run_id = body["id"]

    def held_run():
        run = host.request("GET", f"/api/upgrades/{run_id}")[1]
        return run if run["reason"].startswith("held:") and run["facts"]["batchIndex"] == 1 else None

    # THEN the first batch drained, and the run waits on the held node with who and why in its status
    run = wait_until(held_run, timeout=90, interval=0.3, what="the run to wait on the held node")
    assert f"node {held} held by team-finance (node): quarterly ledger close" in run["reason"]
    # AND the held node keeps its pods while the run waits (several looks later)
    wait_until(lambda: sum(1 for r in host.request("GET", f"/api/upgrades/{run_id}")[1]["timeline"]
                           if r["reason"].startswith("held:")) >= 3, timeout=30, what="three looks at the hold")
    assert {p["metadata"]["name"] for p in cluster.kube.pods() if p["spec"].get("nodeName") == held} == pods_on_held
    # WHEN the hold is removed
    kubectl(kubeconfig, "annotate", "node", held, f"{HOLD_ANNOTATION}-", f"{HOLD_BY_ANNOTATION}-")
    # THEN the run drains it and ends done
    final = wait_status(host, run_id, timeout=120)
    assert final["status"] == "succeeded", final["reason"]
    green = final["facts"]["greenPool"]
    assert pools(cluster) == {"system", green}
    assert all(where == ((green, True),) for where in app_pods(cluster).values())
    assert final["facts"]["holds"] == [{"node": held, "source": "node", "by": "team-finance",
                                        "reason": "quarterly ledger close"}]
