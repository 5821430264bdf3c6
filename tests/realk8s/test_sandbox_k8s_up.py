"""``python -m sandbox.k8s up``: one JSON line, kubeconfigs that work, a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.k8s.binaries import binaries
from tests.integration.test_emulator_kubectl import kubectl_runner

pytestmark = pytest.mark.realk8s

REPO_ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_prints_the_endpoints_serves_both_identities_and_stops_everything(tmp_path):
    if binaries().missing():
        pytest.skip(f"real Kubernetes control plane not built (missing {binaries().missing()[0]}): run `make k8s`")
    # GIVEN the control plane started the way a developer starts it
    process = subprocess.Popen([sys.executable, "-m", "sandbox.k8s", "up", "--pool", "system=1:System",
                                "--pool", "blue=2"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        ready = json.loads(line)
        workdir = Path(ready["workdir"])
        children = [int(p) for p in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True,
                                                   text=True, check=False).stdout.split()]
        # THEN the admin sees the AKS-like nodes, and the app identity has exactly the infra role's rights
        admin = kubectl_runner(Path(ready["kubeconfigs"]["admin"]), tmp_path)
        app = kubectl_runner(Path(ready["kubeconfigs"]["app"]), tmp_path)
        nodes = admin("get", "nodes", "-l", "kubernetes.azure.com/agentpool=blue", "-o", "name")
        assert nodes.stdout.split() == [f"node/{n}" for n in ready["nodes"] if "-blue-" in n]
        assert app("auth", "can-i", "create", "pods", "--subresource=eviction", "-n", "default").stdout.strip() == "yes"
        assert app("auth", "can-i", "list", "secrets", "-n", "default").stdout.strip() == "no"
        assert len(children) == 5  # etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        process.stdout.close()
        process.stderr.close()
    # AND on SIGTERM it exits 0, every component is gone and its folder removed
    assert code == 0
    assert not [pid for pid in children if _alive(pid)]
    assert not workdir.exists()
