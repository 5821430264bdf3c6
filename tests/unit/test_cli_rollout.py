"""``python -m upgrade rollout``: a table of stages, groups and clusters with whole run ids; the data
itself with -o json; skip names a cluster by ARM id or by its unique name; a plan file goes to the API."""

from __future__ import annotations

import json

import pytest

from upgrade.cli import main, status

SUB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters"
ROLLING_ID = "rolling-nodepool1-0123456789ab"


def rollout_body(status_: str = "halted") -> dict:
    def cluster(name: str, state: str, runs: dict | None = None) -> dict:
        return {"cluster": f"{SUB}/{name}", "status": state, "runs": runs or {}, "reason": ""}

    return {"id": "rollout-abcdef012345", "name": "fleet", "status": status_, "stage": 1, "targetVersion": "1.31.7",
            "reason": "stage staging: 1 cluster(s) failed", "updatedAt": "2026-01-01T00:00:00+00:00",
            "stages": [{"name": "dev", "groups": [{"name": "group-1", "clusters": [
                           cluster("aks-1", "done", {"nodepool1": ROLLING_ID})]}]},
                       {"name": "staging", "groups": [{"name": "east", "clusters": [
                           cluster("aks-2", "failed"), cluster("aks-3", "pending")]}]}]}


@pytest.fixture
def api(monkeypatch):
    calls: list[tuple[str, str, object]] = []

    def call(self, method, path, body=None):
        calls.append((method, path, body))
        return rollout_body()

    monkeypatch.setattr(status.UpgradeApi, "call", call)
    monkeypatch.setenv("COLUMNS", "60")  # narrow: ids must still be whole
    return calls


def test_show_prints_every_cluster_with_its_stage_status_and_whole_run_ids(api, capsys):
    assert main(["rollout", "show", "rollout-abcdef012345", "--api-url", "http://app.test"]) == 0
    out = capsys.readouterr().out
    assert "rollout-abcdef012345" in out and ROLLING_ID in out
    lines = [line.split() for line in out.splitlines()]
    assert ["staging", "east", "aks-2", "failed"] in [line[:4] for line in lines]
    assert ["dev", "group-1", "aks-1", "done"] in [line[:4] for line in lines]


def test_json_output_is_the_api_answer(api, capsys):
    assert main(["rollout", "show", "rollout-abcdef012345", "-o", "json", "--api-url", "http://app.test"]) == 0
    assert json.loads(capsys.readouterr().out) == rollout_body()


@pytest.mark.parametrize(("given", "sent"), [("aks-2", f"{SUB}/aks-2"), (f"{SUB}/aks-3", f"{SUB}/aks-3")])
def test_skip_sends_the_clusters_arm_id(api, given, sent):
    assert main(["rollout", "skip", "rollout-abcdef012345", given, "--reason", "r", "--api-url", "http://a"]) == 0
    assert api[-1] == ("POST", "/api/rollouts/rollout-abcdef012345/skip", {"reason": "r", "cluster": sent})


def test_skip_of_a_name_the_rollout_does_not_have_is_bad_input(api, capsys):
    assert main(["rollout", "skip", "rollout-abcdef012345", "aks-9", "--api-url", "http://a"]) == 2
    assert "CLUSTER" in capsys.readouterr().err


def test_start_posts_the_plan_file(api, tmp_path):
    plan = {"stages": [{"groups": [{"clusters": [f"{SUB}/aks-1"]}]}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    assert main(["rollout", "start", str(tmp_path / "plan.json"), "--api-url", "http://a"]) == 0
    assert api == [("POST", "/api/rollouts", plan)]
