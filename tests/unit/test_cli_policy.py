"""``python -m upgrade policy check FILE``: a policy file is refused with exactly the error the app
gives for the same UPGRADE_POLICY at start-up, and accepted when the app would accept it."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_cli_event import run_cli
from upgrade.errors import InvalidInput
from upgrade.settings import load_settings

CLUSTER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1"
OTHER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks2"


def app_error(policy: str) -> str:
    """The one line the app's settings loader gives for this policy."""
    with pytest.raises(InvalidInput) as refused:
        load_settings({"UPGRADE_POLICY": policy, "ALLOWED_CLUSTERS": CLUSTER})
    return f"error: {refused.value}"


@pytest.mark.parametrize("policy", [
    '{"defaults": {"remediation": {"relax-pdb": "sometimes"}}}',
    '{"defaults": {"rolling": {"maxSurge": "-3"}}}',
    '{"defaults": {"strategy": "blue-green", "blueGreen": {"drainBatchSize": "0"}}}',
    f'{{"clusters": {{"{OTHER}": {{}}}}}}',
    f'{{"clusters": {{"{CLUSTER}": {{"pools": {{"blue": {{"onNewVersion": "maybe"}}}}}}}}}}',
    '{"defaults": {"remdiation": {}}}',
    "{not json",
])
def test_a_bad_policy_fails_with_the_apps_own_error(policy, tmp_path):
    # GIVEN a policy file the app would refuse
    path = tmp_path / "policy.json"
    path.write_text(policy)
    # WHEN it is checked with the app's allow-list
    done = run_cli("policy", "check", str(path), "--allowed-clusters", CLUSTER)
    # THEN exit 2 and one line, the app's own
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode().splitlines() == [app_error(policy)]


def test_a_good_policy_is_summarised_and_says_when_the_allow_list_was_not_checked(tmp_path):
    policy = {"defaults": {"remediation": {"relax-pdb": "approval-required"}},
              "clusters": {CLUSTER: {"pools": {"blue": {"strategy": "blue-green"}}}}}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    checked = run_cli("policy", "check", str(path), "--allowed-clusters", CLUSTER)
    unchecked = run_cli("policy", "check", "-", stdin=json.dumps(policy).encode())
    as_json = run_cli("policy", "check", str(path), "-o", "json")
    assert checked.returncode == 0, checked.stderr
    assert "a valid UPGRADE_POLICY (defaults, 1 cluster entry, 1 pool entry)" in checked.stdout.decode()
    assert "not checked against ALLOWED_CLUSTERS" not in checked.stdout.decode()
    assert unchecked.returncode == 0 and "not checked against ALLOWED_CLUSTERS" in unchecked.stdout.decode()
    summary = json.loads(as_json.stdout)
    assert summary["defaults"]["remediation"]["relax-pdb"] == "approval-required"
    assert summary["pools"] == [f"{CLUSTER.lower()}/blue"]
