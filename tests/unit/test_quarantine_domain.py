"""Quarantine diagnosis and alert dedup, as pure functions."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from upgrade.domain.model import QUARANTINE_LABEL, QUARANTINE_VALUE, Autoscaler, ClusterRef, Node, Pdb, Pod
from upgrade.domain.policy import AlertThresholds
from upgrade.domain.quarantine import (
    AlertState,
    PoolUpgradeFacts,
    decide_node_alert,
    diagnose_cordoned_nodes,
    diagnose_node,
    relaxed_spec,
    resolved_alert,
)
from upgrade.domain.scale_out import raised_bounds
from upgrade.domain.selectors import LabelSelector

CLUSTER = ClusterRef("sub", "rg", "aks")
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
THRESHOLDS = AlertThresholds(reAlertIntervalMinutes=60, escalateAfterMinutes=240, cordonedGraceMinutes=30)


def node(quarantined=True, name="n1") -> Node:
    labels = (("kubernetes.azure.com/agentpool", "np"),) + (((QUARANTINE_LABEL, QUARANTINE_VALUE),) if quarantined else ())
    return Node(name=name, pool="np", kubernetes_version="1.30.0", unschedulable=True, labels=labels)


def pod(name, owner="ReplicaSet", app="a", **kw) -> Pod:
    return Pod("default", name, f"uid-{name}", "n1", labels=(("app", app),), owner_kind=owner, owner_name="rs", **kw)


PDB_A = Pdb("default", "a-pdb", LabelSelector.match_labels({"app": "a"}), min_available="1", disruptions_allowed=0, current_healthy=1,
            desired_healthy=1, expected_pods=1)


def test_diagnosis_names_the_blocking_pod_its_pdb_and_skips_daemonset_and_mirror_pods():
    pods = [pod("a-1"), pod("ds-1", owner="DaemonSet", app="ds"), pod("static", owner="Node", app="s", mirror=True),
            pod("b-1", app="b")]
    finding = diagnose_node(CLUSTER, node(), pods, [PDB_A])
    assert finding.pods == ("default/a-1", "default/b-1")
    assert [(b.pod, b.pdb, b.min_available, b.disruptions_allowed) for b in finding.blockers] == [
        ("default/a-1", "default/a-pdb", "1", 0)]
    assert [(o.kind, o.applicable) for o in finding.options] == [
        ("scale-out", True), ("relax-pdb", True), ("delete-pod", True), ("replace-node", True)]


@pytest.mark.parametrize(("blocking", "order", "scale_command"), [
    # A Deployment's pod (its ReplicaSet named after it plus the pod-template-hash): scale-out first.
    pytest.param(dict(owner="ReplicaSet", owner_name="web-7d9f", labels=(("app", "a"), ("pod-template-hash", "7d9f"))),
                 ["scale-out", "relax-pdb", "delete-pod", "replace-node"], "kubectl scale deployment web", id="deployment"),
    pytest.param(dict(owner="StatefulSet", owner_name="db"),
                 ["scale-out", "relax-pdb", "delete-pod", "replace-node"], "kubectl scale statefulset db", id="statefulset"),
    pytest.param(dict(owner="ReplicaSet", owner_name="solo"),
                 ["scale-out", "relax-pdb", "delete-pod", "replace-node"], "kubectl scale replicaset solo", id="replicaset"),
    # Nothing to scale: offered last, not applicable, saying why.
    pytest.param(dict(owner=None, owner_name=None), ["relax-pdb", "delete-pod", "replace-node", "scale-out"], None,
                 id="unmanaged"),
    pytest.param(dict(owner="Job", owner_name="nightly"), ["relax-pdb", "delete-pod", "replace-node", "scale-out"], None,
                 id="a-job"),
])
def test_scale_out_is_offered_first_when_the_blocking_pod_has_a_scalable_workload(blocking, order, scale_command):
    # GIVEN a pod A that the PDB blocks, controlled by ``blocking``
    fields = dict(blocking)
    owner, owner_name = fields.pop("owner"), fields.pop("owner_name")
    labels = fields.pop("labels", (("app", "a"),))
    a = Pod("default", "a-1", "uid-a-1", "n1", labels=labels, owner_kind=owner, owner_name=owner_name)
    # WHEN the node is diagnosed
    finding = diagnose_node(CLUSTER, node(), [a], [PDB_A])
    # THEN scale-out comes first when it applies, with a conditional raise and restore (kubectl's
    # --current-replicas), else last with the reason
    assert [o.kind for o in finding.options] == order
    scale_out = next(o for o in finding.options if o.kind == "scale-out")
    text = "\n".join(scale_out.commands)
    if scale_command is None:
        assert not scale_out.applicable and "no Deployment, ReplicaSet or StatefulSet" in scale_out.caveat
    else:
        assert scale_out.applicable
        assert f'{scale_command} --namespace default --current-replicas="$REPLICAS0" --replicas=$(( REPLICAS0 + 1 ))' in text
        assert f'{scale_command} --namespace default --current-replicas=$(( REPLICAS0 + 1 )) --replicas="$REPLICAS0"' in text
        assert text.index("--replicas=$(( REPLICAS0") < text.index("kubectl drain") < text.index('--replicas="$REPLICAS0"')


WEB_POD = Pod("default", "web-1", "uid-web-1", "n1", labels=(("app", "a"), ("pod-template-hash", "7d9f")),
              owner_kind="ReplicaSet", owner_name="web-7d9f")
FAKE_KUBECTL = """#!/bin/sh
# reads: the Deployment's replicas, the HPA's bounds; patches: their -p argument, one a line
case "$*" in
  "get hpa"*minReplicas*) printf %s "$MIN" ;;
  "get hpa"*maxReplicas*) printf %s "$MAX" ;;
  "get deployment"*) printf %s "$REPLICAS" ;;
  "scale "*) echo "kubectl scale: the HPA would undo it" >> "$LOG"; exit 1 ;;
  patch*) while [ $# -gt 0 ]; do [ "$1" = -p ] && printf '%s\\n' "$2" >> "$LOG"; shift; done ;;
esac
"""


@pytest.mark.parametrize(("bounds", "replicas"), [
    pytest.param((1, 5), 1, id="at-its-minimum"),
    pytest.param((2, 10), 4, id="above-its-minimum"),
    pytest.param((2, 3), 3, id="at-its-maximum"),
])
def test_scale_out_commands_raise_the_hpa_that_owns_the_workload_as_the_run_would(tmp_path, bounds, replicas):
    # GIVEN pod web-1 of Deployment web blocked, web scaled by HPA web-hpa at ``bounds``, ``replicas`` now
    hpa = Autoscaler("default", "web-hpa", "Deployment", "web", *bounds)
    finding = diagnose_node(CLUSTER, node(), [WEB_POD], [PDB_A], autoscalers=[hpa])
    scale_out = next(o for o in finding.options if o.kind == "scale-out")
    assert scale_out.applicable and finding.options[0] is scale_out
    # WHEN an operator pastes the commands into a shell (kubectl answering as the cluster would)
    (tmp_path / "kubectl").write_text(FAKE_KUBECTL)
    (tmp_path / "kubectl").chmod(0o755)
    (tmp_path / "az").write_text("#!/bin/sh\n")
    (tmp_path / "az").chmod(0o755)
    log = tmp_path / "patches"
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "LOG": str(log), "REPLICAS": str(replicas),
           "MIN": str(bounds[0]), "MAX": str(bounds[1])}
    done = subprocess.run(["/bin/sh", "-eu", "-c", "\n".join(scale_out.commands)], env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    # THEN they patch the HPA's bounds (never kubectl scale, which it would undo), to what the app's
    # run raises them to, only while they are as read; and back, only while they are as raised
    raised = list(raised_bounds(*bounds, replicas, 1))
    [up, down] = [json.loads(line) for line in log.read_text().splitlines()]

    def patch(test, to):
        return [{"op": "test", "path": "/spec/minReplicas", "value": test[0]},
                {"op": "test", "path": "/spec/maxReplicas", "value": test[1]},
                {"op": "replace", "path": "/spec/minReplicas", "value": to[0]},
                {"op": "replace", "path": "/spec/maxReplicas", "value": to[1]}]

    assert up == patch(list(bounds), raised)
    assert down == patch(raised, list(bounds))
    text = "\n".join(scale_out.commands)
    assert text.index("kubectl patch hpa web-hpa") < text.index("kubectl drain") < text.rindex("kubectl patch hpa")


def test_scale_out_for_a_workload_two_hpas_scale_is_not_applicable():
    hpas = [Autoscaler("default", name, "Deployment", "web", 1, 5) for name in ("web-hpa", "web-hpa2")]
    finding = diagnose_node(CLUSTER, node(), [WEB_POD], [PDB_A], autoscalers=hpas)
    scale_out = finding.options[-1]
    assert scale_out.kind == "scale-out" and not scale_out.applicable
    assert "more than one HorizontalPodAutoscaler scales default/web" in scale_out.caveat


def test_an_unmanaged_blocking_pod_makes_delete_pod_inapplicable_with_the_reason():
    finding = diagnose_node(CLUSTER, node(), [pod("a-bare", owner=None)], [PDB_A])
    delete = next(o for o in finding.options if o.kind == "delete-pod")
    assert not delete.applicable and "no controller" in delete.caveat


def test_relaxing_keeps_the_selector():
    original = {"selector": {"matchLabels": {"app": "a"}}, "minAvailable": 1}
    assert relaxed_spec(original, 1) == {"selector": {"matchLabels": {"app": "a"}}, "maxUnavailable": 1}


def state(**kw) -> AlertState:
    base = dict(node="n1", pool="np", condition="quarantined", first_seen=T0, last_alert_at=T0, severity="error",
                alert_count=1)
    return AlertState(**{**base, **kw})


# previous state, quarantined?, minutes after T0 -> send?, severity, reason
DECISIONS = [
    (None, True, 0, True, "error", "new"),
    (state(), True, 10, False, "error", "suppressed"),
    (state(), True, 60, True, "error", "re-alert"),
    (state(), True, 240, True, "critical", "escalated"),
    (state(severity="critical", last_alert_at=T0 + timedelta(minutes=240)), True, 250, False, "critical", "suppressed"),
    (state(condition="cordoned", severity="warning"), True, 5, True, "error", "condition-changed"),
    (None, False, 0, False, "warning", "grace"),
    (state(condition="cordoned", alert_count=0, last_alert_at=None, severity=None), False, 29, False, "warning", "grace"),
    (state(condition="cordoned", alert_count=0, last_alert_at=None, severity=None), False, 30, True, "warning", "new"),
]


@pytest.mark.parametrize("previous, quarantined, minutes, send, severity, reason", DECISIONS)
def test_alert_dedup_decisions(previous, quarantined, minutes, send, severity, reason):
    finding = diagnose_node(CLUSTER, node(quarantined), [pod("a-1")], [PDB_A])
    decision = decide_node_alert(previous, finding, T0 + timedelta(minutes=minutes), THRESHOLDS)
    assert (decision.send, decision.severity, decision.reason) == (send, severity, reason)
    if send:
        assert decision.state.last_alert_at == T0 + timedelta(minutes=minutes)


def test_resolved_notice_only_for_a_node_that_was_alerted():
    assert resolved_alert(CLUSTER, state(alert_count=0), T0) is None
    notice = resolved_alert(CLUSTER, state(), T0 + timedelta(minutes=90), how="remediated by relax-pdb")
    assert (notice.kind, notice.severity, notice.node) == ("node.resolved", "info", "n1")
    assert "after 90 min" in notice.summary


@pytest.mark.parametrize(
    ("facts", "version_part", "count_part"),
    [
        # The run that upgraded the pool recorded both: the commands carry them.
        (PoolUpgradeFacts(pre_upgrade_count=2, target_version="1.31.7"), "--kubernetes-version 1.31.7 ",
         "--node-count 2"),
        # An upgrade the product did not see start: the commands read ARM when they run.
        (PoolUpgradeFacts(), "--kubernetes-version $(az aks nodepool show",
         "--node-count $(( $(az aks nodepool show"),
    ],
)
def test_every_way_out_is_a_command_an_operator_can_paste(facts, version_part, count_part):
    [finding] = diagnose_cordoned_nodes(CLUSTER, [node()], {"n1": [pod("a-1")]}, [PDB_A], pool_facts={"np": facts})
    for option in finding.options:
        text = "\n".join(option.commands)
        assert "<" not in text, (option.kind, text)  # no placeholder left to fill in
        if option.kind != "replace-node":  # deleting the machine needs no version or count
            assert version_part in text and count_part in text, (option.kind, text)


# pods of the workload on the cordoned node, the PDB's status.expectedPods -> replicas the alert names
REPLICAS = [
    pytest.param(["a-1"], 3, 3, id="one-of-three-replicas-on-the-node"),
    pytest.param(["a-1", "a-2"], 2, 2, id="every-replica-on-the-node"),
    pytest.param(["a-1", "a-2"], 0, 2, id="pdb-status-not-filled-in-yet"),
]


@pytest.mark.parametrize("on_node, expected_pods, replicas", REPLICAS)
def test_a_blocker_names_the_workloads_replicas_not_only_those_on_the_node(on_node, expected_pods, replicas):
    # GIVEN a workload whose other replicas run elsewhere; the scan lists only this node's pods
    pdb = Pdb("default", "a-pdb", LabelSelector.match_labels({"app": "a"}), min_available=str(expected_pods), disruptions_allowed=0,
              current_healthy=expected_pods, desired_healthy=expected_pods, expected_pods=expected_pods)
    # WHEN the node is diagnosed
    finding = diagnose_node(CLUSTER, node(), [pod(name) for name in on_node], [pdb])
    # THEN each blocker says how many replicas the workload has, as the PDB counts them
    assert [b.replicas for b in finding.blockers] == [replicas] * len(on_node)
