"""`python -m sandbox up --scenario seed-pdb`: the whole local stand-in for Azure in one command.

It must print one JSON line with every endpoint a client needs, those endpoints must work (kubectl
with the printed kubeconfig, the Functions host with the printed key), and SIGTERM must stop every
process it started: Azurite, the dev host and anything they spawned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
ENDPOINTS = ("functionsUrl", "functionKey", "apiTokens", "kubeconfig", "armUrl", "clusterIds", "storageConnection", "token",
             "alertsUrl")


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (children's children included)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the parent pid follows the last ')'.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


POLICY = {"defaults": {"remediation": {"relax-pdb": "approval-required"}}}


@pytest.fixture
def sandbox_up(tmp_path):
    """The command with a policy file, started in its own session so a failed test can still clean up."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "up", "--scenario", "seed-pdb", "--time-scale", "0.5",
         "--policy", str(policy)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    process.stdout.close()


def test_sandbox_up_prints_every_endpoint_serves_them_and_stops_on_sigterm(sandbox_up, tmp_path):
    # GIVEN `python -m sandbox up --scenario seed-pdb` running
    # WHEN it is ready
    endpoints = json.loads(sandbox_up.stdout.readline())

    # THEN its one JSON line names every endpoint, for the one seed-pdb cluster
    assert {key: endpoints.get(key) not in (None, "", []) for key in ENDPOINTS} == dict.fromkeys(ENDPOINTS, True)
    (cluster_id,) = endpoints["clusterIds"]
    assert cluster_id.endswith("/managedClusters/aks-seed-pdb")

    # AND kubectl reaches the emulated cluster with the printed kubeconfig
    nodes = subprocess.run(
        [str(KUBECTL), "get", "nodes", "-o", "name"], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "KUBECONFIG": endpoints["kubeconfig"], "HOME": str(tmp_path)},
    )
    assert nodes.returncode == 0, nodes.stderr
    assert len(nodes.stdout.split()) == 3  # the system node and nodepool1's two

    # AND the Functions host answers an operator's call with the printed reader token
    request = Request(f"{endpoints['functionsUrl']}/api/upgrades",
                      headers={"Authorization": f"Bearer {endpoints['apiTokens']['reader']}"})
    with urlopen(request, timeout=30) as response:
        assert response.status == 200

    # AND the app runs with the given policy: relax-pdb is allowed (the request is refused only
    # because the node is not cordoned, 409), where the default policy answers 403 "is off"
    node = nodes.stdout.split()[-1].removeprefix("node/")
    remediate = Request(f"{endpoints['functionsUrl']}/api/quarantine/aks-seed-pdb/{node}/remediate",
                        data=json.dumps({"kind": "relax-pdb"}).encode(), method="POST",
                        headers={"Authorization": f"Bearer {endpoints['apiTokens']['operator']}"})
    with pytest.raises(HTTPError) as refused:
        urlopen(remediate, timeout=30)
    assert refused.value.code == 409 and "not cordoned" in json.loads(refused.value.read())["message"]

    # WHEN it receives SIGTERM
    started = descendants(sandbox_up.pid)
    assert started, "Azurite and the dev host run as child processes"
    sandbox_up.send_signal(signal.SIGTERM)

    # THEN it exits cleanly, printed nothing more on stdout, and left no process it started running
    assert sandbox_up.wait(timeout=60) == 0
    assert sandbox_up.stdout.read() == ""
    assert wait_until(lambda: not any(alive(pid) for pid in started), timeout=10,
                      what="every child process to be gone")


@pytest.mark.parametrize(("policy", "problem"), [
    ('{"defaults": {"remediation": {"relax-pdb": "sometimes"}}}', "UPGRADE_POLICY.defaults.remediation.relax-pdb"),
    ('{"clusters": {"/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/x": {}}}',
     "is not in ALLOWED_CLUSTERS"),
    ("no-such-policy.json", "--policy"),
])
def test_a_bad_policy_is_one_error_line_and_exit_2(policy, problem):
    # GIVEN a policy the app would refuse WHEN the sandbox is asked to start with it
    done = subprocess.run([sys.executable, "-m", "sandbox", "up", "--scenario", "seed-pdb", "--policy", policy],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    # THEN it says why in one line, as the app would, and prints no endpoints
    assert done.returncode == 2 and done.stdout == ""
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert problem in line
