"""``python -m upgrade event``: run as a subprocess, as an operator does; and the pure
planned_reaction vocabulary it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from upgrade.domain import reactions
from upgrade.domain.events import parse_events

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"

EXPECTED_ACTION = {
    "NewKubernetesVersionAvailable": reactions.PREFLIGHT,
    "ClusterSupportEnding": reactions.ALERT,
    "ClusterSupportEnded": reactions.ALERT,
    "NodePoolRollingStarted": reactions.RECORD_ROLLING_RUN,
    "NodePoolRollingSucceeded": reactions.POST_UPGRADE_RECONCILE,
    "NodePoolRollingFailed": reactions.POST_UPGRADE_RECONCILE,
}


def run_cli(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "upgrade", *args], input=stdin, capture_output=True, cwd=ROOT, env=environment,
        timeout=60, check=False,
    )


@pytest.mark.parametrize("folder", ["eventgrid", "cloudevents"])
def test_each_sample_prints_the_typed_event_and_its_reaction(folder):
    for type_name, action in EXPECTED_ACTION.items():
        # GIVEN a recorded event WHEN the CLI reads it THEN exit 0 with the event and reaction as JSON
        result = run_cli("event", "--dry-run", str(EVENTS / folder / f"{type_name}.json"))
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        (event,) = report["events"]
        (reaction,) = report["reactions"]
        assert event["type"] == f"Microsoft.ContainerService.{type_name}"
        assert event["cluster"]["name"] == "aks-prod-weu"
        assert reaction["action"] == action
        assert reaction["eventId"] == event["id"]
        assert report["dryRun"] is True


def test_array_from_stdin_skips_unknown_types():
    # GIVEN a batch on stdin with one non-AKS event WHEN read from "-" THEN only the AKS events
    result = run_cli("event", "--dry-run", "-", stdin=(EVENTS / "array" / "eventgrid-batch.json").read_bytes())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["action"] for r in report["reactions"]] == [reactions.RECORD_ROLLING_RUN,
                                                          reactions.POST_UPGRADE_RECONCILE]
    # AND the skipped one is named with the reason
    [skipped] = report["skipped"]
    assert skipped["type"] == "Microsoft.Storage.BlobCreated"
    assert "not an AKS event this app handles" in skipped["reason"]


def test_an_unknown_event_type_alone_is_refused_with_the_reason():
    # GIVEN an event whose eventType is misspelt WHEN read THEN exit 2 naming the type and the handled ones
    event = json.loads((EVENTS / "eventgrid" / "NodePoolRollingFailed.json").read_text())
    event["eventType"] = "Microsoft.ContainerService.NodePoolRollingFialed"
    result = run_cli("event", "--dry-run", "-", stdin=json.dumps(event).encode())
    assert result.returncode == 2 and result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert "'Microsoft.ContainerService.NodePoolRollingFialed'" in line
    assert "Microsoft.ContainerService.NodePoolRollingFailed" in line


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["malformed/docs-sample-topic-without-slash.json"], "topic"),
        (["malformed/missing-node-pool-name.json"], "data.nodePoolName"),
        (["malformed/not-json.json"], "payload"),
        (["malformed/array-with-bad-second-event.json"], "[1].data"),
        (["does-not-exist.json"], "FILE"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_field(args, field):
    result = run_cli("event", "--dry-run", *(str(EVENTS / a) for a in args))
    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and f": {field}: " in lines[0]


def test_debug_shows_the_traceback():
    result = run_cli("--debug", "event", "--dry-run", str(EVENTS / "malformed" / "not-json.json"))
    assert result.returncode == 2
    assert "Traceback" in result.stderr.decode()


def test_without_dry_run_the_app_settings_are_required():
    # GIVEN no app settings WHEN the event would be applied THEN a one-line settings error, exit 2
    result = run_cli("event", str(EVENTS / "eventgrid" / "ClusterSupportEnded.json"))
    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith("error: invalid setting:")


def test_subcommands_are_discovered_from_the_package():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "event" in result.stdout.decode()


def _event(type_name: str, folder: str = "eventgrid"):
    (event,) = parse_events((EVENTS / folder / f"{type_name}.json").read_bytes())
    return event


@pytest.mark.parametrize(
    ("strategy", "on_new_version", "then"),
    [
        ("rolling", "notify", reactions.THEN_NOTIFY),
        ("rolling", "preflight-report", reactions.THEN_REPORT),
        ("rolling", "start", reactions.THEN_START_ROLLING),
        ("blue-green", "start", reactions.THEN_START_BLUE_GREEN),
        ("blue-green", "notify", reactions.THEN_NOTIFY),
    ],
)
def test_new_version_reaction_follows_the_policy(strategy, on_new_version, then):
    policy = SimpleNamespace(strategy=strategy, on_new_version=on_new_version)
    plan = reactions.planned_reaction(_event("NewKubernetesVersionAvailable"), policy)
    assert (plan["action"], plan["then"], plan["targetVersion"]) == (reactions.PREFLIGHT, then, "1.31.2")


def test_new_version_without_policy_uses_the_defaults():
    plan = reactions.planned_reaction(_event("NewKubernetesVersionAvailable"))
    assert (plan["strategy"], plan["then"]) == ("rolling", reactions.THEN_REPORT)


@pytest.mark.parametrize(
    ("type_name", "expected"),
    [
        ("ClusterSupportEnding", {"action": reactions.ALERT, "severity": "warning", "kubernetesVersion": "1.29.9"}),
        ("ClusterSupportEnded", {"action": reactions.ALERT, "severity": "error", "kubernetesVersion": "1.28.5"}),
        ("NodePoolRollingStarted", {"action": reactions.RECORD_ROLLING_RUN, "pool": "userpool"}),
        ("NodePoolRollingSucceeded", {"action": reactions.POST_UPGRADE_RECONCILE, "pool": "userpool",
                                      "outcome": "succeeded"}),
        ("NodePoolRollingFailed", {"action": reactions.POST_UPGRADE_RECONCILE, "pool": "userpool",
                                   "outcome": "failed"}),
    ],
)
def test_fixed_reactions(type_name, expected):
    plan = reactions.planned_reaction(_event(type_name, "cloudevents"))
    assert {key: plan[key] for key in expected} == expected


def test_duplicate_deliveries_share_a_dedup_key_across_schemas():
    # GIVEN the same event delivered in both schemas WHEN planned THEN one dedup key
    first = reactions.planned_reaction(_event("NodePoolRollingFailed", "eventgrid"))
    second = reactions.planned_reaction(_event("NodePoolRollingFailed", "cloudevents"))
    assert first["dedupKey"] == second["dedupKey"]


def test_a_fleet_gate_event_prints_the_gate_and_its_reaction():
    sample = EVENTS / "fleet" / "FleetGateCreated.json"
    completed = run_cli("event", "--dry-run", str(sample))
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["fleetGateEvent"] == {"id": json.loads(sample.read_text())["id"],
                                        "type": "Microsoft.ResourceNotifications.AKSResources.FleetGateCreated",
                                        "gate": json.loads(sample.read_text())["data"]["resourceInfo"]["id"]}
    assert "health gate" in report["reaction"] and "applied" not in report
    broken = json.loads(sample.read_text())
    broken["data"]["resourceInfo"]["id"] = "/subscriptions/s/resourceGroups/rg"
    refused = run_cli("event", "--dry-run", "-", stdin=json.dumps(broken).encode())
    assert refused.returncode == 2 and b"data.resourceInfo.id" in refused.stderr
