"""Application holds: who holds a node and why (annotations, blocking-pod selectors), how long a
drain waits, and what happens when the maximum runs out; on real blue-green and rolling runs."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from tests.fakes import DEFAULT_NOW
from tests.unit.test_bluegreen_steps import (  # noqa: F401  (bluegreen_registered is an autouse fixture)
    CLUSTER,
    Driver,
    bluegreen_registered,
    make_platform,
    scenario3,
    start,
)
from upgrade.domain.holds import HOLD_ANNOTATION, HOLD_BY_ANNOTATION, decide, holds_on
from upgrade.domain.model import Node, Pod
from upgrade.domain.policy import parse_policy
from upgrade.domain.selectors import LabelSelector
from upgrade.services.holds import holds_for

NODE = Node("n1", "p", "1.30.0")


def pod(name, node="n1", annotations=(), labels=(), **kwargs):
    return Pod("ns", name, f"uid-{name}", node, annotations=tuple(annotations), labels=tuple(labels), **kwargs)


HOLD_CASES = [
    ("nothing holds", NODE, [pod("a")], [], []),
    ("the node's annotation, no hold-by: the node is named",
     replace(NODE, annotations=((HOLD_ANNOTATION, "kernel patch test"),)), [], [],
     [("node", "node", "kernel patch test")]),
    ("a pod's annotation with hold-by",
     NODE, [pod("db-0", annotations=((HOLD_ANNOTATION, "backup running"), (HOLD_BY_ANNOTATION, "team-db")))], [],
     [("pod ns/db-0", "team-db", "backup running")]),
    ("an empty reason still holds", NODE, [pod("x", annotations=((HOLD_ANNOTATION, ""),))], [],
     [("pod ns/x", "pod ns/x", "(no reason given)")]),
    ("a blocking selector holds through a pod it selects",
     NODE, [pod("batch-1", labels=(("app", "batch"),)), pod("web", labels=(("app", "web"),))], ["app=batch"],
     [("pod ns/batch-1 (blocking selector app=batch)", "pod ns/batch-1 (blocking selector app=batch)",
       "matches a blocking-pod selector of the policy")]),
    ("a terminating or finished pod holds nothing", NODE,
     [pod("t", annotations=((HOLD_ANNOTATION, "x"),), deleting=True),
      pod("f", annotations=((HOLD_ANNOTATION, "x"),), phase="Succeeded")], [], []),
    ("a pod on another node does not hold this one", NODE,
     [pod("o", node="n2", annotations=((HOLD_ANNOTATION, "x"),))], [], []),
]


@pytest.mark.parametrize(("case", "node", "pods", "selectors", "expected"), HOLD_CASES, ids=[c[0] for c in HOLD_CASES])
def test_who_holds_a_node_and_why(case, node, pods, selectors, expected):
    found = holds_on(node, pods, [LabelSelector.parse(s) for s in selectors])
    assert [(h.source, h.by, h.reason) for h in found] == expected


HELD = holds_on(replace(NODE, annotations=((HOLD_ANNOTATION, "why"),)), [])
SINCE = datetime(2026, 1, 1, 0, 0)
DECISIONS = [
    ("within the maximum: wait", 59, "wait", (True, False, "info")),
    ("past the maximum, wait: warning", 60, "wait", (True, True, "warning")),
    ("twice the maximum: error", 120, "wait", (True, True, "error")),
    ("four times the maximum: critical", 240, "wait", (True, True, "critical")),
    ("past the maximum, proceed", 61, "proceed", (False, True, "warning")),
]


@pytest.mark.parametrize(("case", "minutes", "on_expiry", "expected"), DECISIONS, ids=[d[0] for d in DECISIONS])
def test_how_long_a_hold_is_honoured(case, minutes, on_expiry, expected):
    decision = decide(HELD, SINCE, SINCE + timedelta(minutes=minutes), max_minutes=60, on_expiry=on_expiry)
    assert (decision.wait, decision.expired, decision.severity) == expected
    assert "node n1 held by node (node): why" in decision.reason


def hold_node(cluster, name, reason="nightly batch", by="team-x"):
    node = cluster.nodes[name]
    annotations = ((HOLD_ANNOTATION, reason), (HOLD_BY_ANNOTATION, by)) if reason is not None else ()
    cluster.nodes[name] = replace(node, annotations=annotations)


def with_holds(platform, **holds):
    platform.policy = parse_policy(json.dumps({"defaults": {"holds": holds}}))
    return platform


def test_a_held_node_is_not_drained_until_the_hold_is_removed_then_the_run_goes_on():
    cluster = scenario3()
    hold_node(cluster, "aks-blue-1")
    platform = make_platform(cluster)
    run = start(platform)
    driver = Driver(platform)
    # the driver delivers until the run has waited a few times on the held node
    for _ in range(60):
        driver.run(run_id=run.run_id, max_deliveries=1)
        current = platform.runs.get(run.run_id)
        if (current.facts.get("holdWait") or {}).get("since") and current.attempt >= 3:
            break
    held = platform.runs.get(run.run_id)
    assert held.reason.startswith("held: node aks-blue-1 held by team-x (node): nightly batch; waiting up to ")
    assert held.facts["holds"] == [{"node": "aks-blue-1", "source": "node", "by": "team-x", "reason": "nightly batch"}]
    assert {p.name for p in cluster.pods.values() if p.node == "aks-blue-1"} == {"c-0", "d-0"}  # not drained
    assert [a.kind for a in platform.alerts.published] == ["node.held"]
    hold_node(cluster, "aks-blue-1", reason=None)
    final = driver.run(run_id=run.run_id)
    assert final.status == "succeeded", final.reason
    assert final.facts["holdWait"] is None and final.facts["holds"][0]["by"] == "team-x"


def test_past_the_maximum_the_policy_may_let_the_drain_proceed_with_a_warning():
    cluster = scenario3()
    hold_node(cluster, "aks-blue-0")
    platform = with_holds(make_platform(cluster), maxHoldMinutes=5, onExpiry="proceed")
    run = start(platform)
    final = Driver(platform).run(run_id=run.run_id)
    assert final.status == "succeeded", final.reason
    assert final.facts["holdsIgnored"][0]["node"] == "aks-blue-0"
    assert [(a.kind, a.severity) for a in platform.alerts.published if a.kind == "node.held"] == [
        ("node.held", "info"), ("node.held", "warning")]
    waited = [h for h in platform.runs.history(run.run_id) if h.reason.startswith("held:")]
    assert waited and (waited[-1].at - waited[0].at) < timedelta(minutes=5) <= (
        final.updated_at - DEFAULT_NOW)


def test_a_blocking_pod_selector_holds_the_node_it_runs_on():
    cluster = scenario3()
    platform = with_holds(make_platform(cluster), blockingPodSelectors=["app=c"], maxHoldMinutes=1, onExpiry="wait")
    run = start(platform)
    Driver(platform).run(run_id=run.run_id, max_deliveries=80)
    current = platform.runs.get(run.run_id)
    assert current.status == "running" and "held past the maximum" in current.reason
    assert "pod shop/c-0 (blocking selector app=c)" in current.reason
    severities = [a.severity for a in platform.alerts.published if a.kind == "node.held"]
    assert severities[:2] == ["info", "warning"] and "error" in severities


def test_preflight_lists_the_holds_on_the_pool():
    from upgrade.services.preflight import preflight_from_request

    cluster = scenario3()
    hold_node(cluster, "aks-blue-1")
    report = preflight_from_request(make_platform(cluster), {"cluster": CLUSTER.arm_id, "pool": "blue",
                                                             "targetVersion": "1.31.2", "strategy": "blue-green"})
    assert report["holds"] == [{"node": "aks-blue-1", "source": "node", "by": "team-x", "reason": "nightly batch"}]


def test_a_scan_finding_and_its_alert_name_the_holds_on_a_cordoned_node():
    from upgrade.domain.quarantine import diagnose_node

    node = replace(NODE, unschedulable=True, annotations=((HOLD_ANNOTATION, "ledger close"), (HOLD_BY_ANNOTATION, "fin")))
    finding = diagnose_node(CLUSTER, node, [pod("a", owner_kind="ReplicaSet", owner_name="a-1")], [])
    assert finding.to_public()["holds"] == [{"node": "n1", "source": "node", "by": "fin", "reason": "ledger close"}]


def test_a_scan_finding_names_a_blocking_selector_hold_as_the_drain_would():
    """The finding shows every hold its remediation's drain (the hold gate) would wait for,
    the policy's blocking-pod selectors included."""
    from upgrade.services.quarantine_scan import current_findings

    cluster = scenario3()
    cluster.nodes["aks-blue-1"] = replace(cluster.nodes["aks-blue-1"], unschedulable=True)
    platform = with_holds(make_platform(cluster), blockingPodSelectors=["app=c"])
    [finding] = [f for f in current_findings(platform, CLUSTER) if f["node"] == "aks-blue-1"]
    assert [h["source"] for h in finding["holds"]] == ["pod shop/c-0 (blocking selector app=c)"]
    assert [h.to_public() for h in holds_for(platform, CLUSTER, "blue", ["aks-blue-1"])] == finding["holds"]
