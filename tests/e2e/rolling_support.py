"""Shared by the rolling and quarantine end-to-end tests: a dev host wired to an emulated cluster
and its Event Grid delivery, and what an operator would see (alerts, runs, nodes, pods)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sandbox.aks_emulator.kube import pod_ready
from sandbox.aks_emulator.scenarios import APP_NAMESPACE
from tests.e2e.conftest import wait_until
from upgrade.domain.model import QUARANTINE_LABEL
from upgrade.domain.runs import FINAL_STATUSES

POOL = "nodepool1"
APPS = ("app-a", "app-b", "app-c", "app-d")

def policy_json(**defaults: Any) -> str:
    """A policy that polls every second (the emulator's operations take seconds, not minutes)."""
    return json.dumps({"defaults": {"pollSeconds": 1, **defaults}})


@dataclass
class Sandbox:
    host: Any
    emulator: Any
    cluster: Any
    receiver: Any

    # -- what the operator receives --------------------------------------------------------------
    def alerts(self) -> list[dict]:
        """Every alert the app published, as the alerts topic (the sandbox receiver) got them."""
        return [event["data"] for event in self.receiver.alerts()]

    def alerts_of(self, kind: str, node: str | None = None) -> list[dict]:
        return [a for a in self.alerts() if a["kind"] == kind and (node is None or a["node"] == node)]

    # -- driving ---------------------------------------------------------------------------------
    def scan_steps(self) -> list[dict]:
        return [i for i in self.host.invocations("run_step") if '"quarantine.scan"' in str(i.get("body", ""))]

    def scan(self) -> None:
        """Fire the scan_quarantine timer now and wait for its cluster scan step to have run."""
        before = len(self.scan_steps())
        status, _ = self.host.request("POST", "/admin/functions/scan_quarantine", body={"input": ""})
        assert status == 202
        wait_until(lambda: len(done := [i for i in self.scan_steps() if i.get("succeeded") is not None]) > before
                   and done, timeout=30, interval=0.1, what="the cluster scan step")

    def deliver_event(self, event: dict) -> int:
        """POST one Event Grid event to the app's webhook, as Event Grid does; returns the status."""
        status, body = self.host.request("POST", "/runtime/webhooks/EventGrid?functionName=on_aks_event",
                                         body=[event], headers={"aeg-event-type": "Notification"})
        assert status // 100 == 2, (status, body)
        return status

    def events_received(self) -> list[str]:
        """The AKS event types the app was invoked with, in arrival order (short names)."""
        return [i["eventType"].rsplit(".", 1)[-1] for i in self.host.invocations("on_aks_event")]

    def runs(self) -> list[dict]:
        status, body = self.host.request("GET", "/api/upgrades")
        assert status == 200, body
        return body["runs"] if isinstance(body, dict) else body

    def run(self, run_id: str) -> dict:
        status, body = self.host.request("GET", f"/api/upgrades/{run_id}")
        assert status == 200, body
        return body

    def wait_run(self, run_id: str, timeout: float = 90.0) -> dict:
        return wait_until(lambda: (r := self.run(run_id))["status"] in FINAL_STATUSES and r, timeout=timeout, interval=0.3,
                          what=f"run {run_id} to finish")

    # -- the cluster -----------------------------------------------------------------------------
    def pool_nodes(self) -> dict[str, dict]:
        return {n["metadata"]["name"]: n for n in self.cluster.kube.nodes(POOL)}

    def node_versions(self) -> set[str]:
        return {n["status"]["nodeInfo"]["kubeletVersion"] for n in self.pool_nodes().values()}

    def quarantined(self) -> list[str]:
        return [name for name, n in self.pool_nodes().items()
                if n["metadata"].get("labels", {}).get(QUARANTINE_LABEL)]

    def cordoned(self) -> list[str]:
        return [name for name, n in self.pool_nodes().items() if n.get("spec", {}).get("unschedulable")]

    def app_pods(self) -> dict[str, list[tuple[str, bool]]]:
        placed: dict[str, list[tuple[str, bool]]] = {}
        for pod in self.cluster.kube.pods():
            meta = pod["metadata"]
            app = meta.get("labels", {}).get("app")
            if meta["namespace"] == APP_NAMESPACE and app in APPS and not meta.get("deletionTimestamp"):
                placed.setdefault(app, []).append((pod["spec"].get("nodeName") or "", pod_ready(pod)))
        return placed

    def pdb_spec(self, name: str = "app-a-pdb") -> dict:
        with self.cluster.kube.lock:
            spec = self.cluster.kube._objects["poddisruptionbudgets"][(APP_NAMESPACE, name)]["spec"]
            return {k: v for k, v in spec.items() if k in ("minAvailable", "maxUnavailable")}


def start_sandbox(emulator_factory, start_devhost, receiver, builder, *, policy: str, duplicate: bool = False,
                  reorder: bool = False, subscribe: bool = True) -> Sandbox:
    """``receiver`` is a started AlertsReceiver: the app publishes its alerts there through the SDK.
    ``subscribe=False`` leaves the app without an Event Grid subscription: it sees no AKS event."""
    emu = emulator_factory(builder)
    cluster = emu.clusters()[0]
    receiver.clear()
    host = start_devhost(emulator=emu, UPGRADE_POLICY=policy, ALERTS_TOPIC_ENDPOINT=receiver.topic_endpoint,
                         ALERTS_TOPIC_KEY=receiver.key)
    if subscribe:
        emu.subscribe(f"{host.url}/runtime/webhooks/EventGrid?functionName=on_aks_event&code={host.function_key}",
                      duplicate=duplicate, reorder=reorder)
    return Sandbox(host, emu, cluster, receiver)


def upgrade_outside_the_product(sandbox: Sandbox, aks: Any, version: str = "1.31.7") -> str:
    """What an operator (or AKS auto-upgrade) does: PUT the pool's version, wait for the end.
    Returns the operation's end: "Succeeded", or the ARM error code."""
    from azure.core.exceptions import HttpResponseError

    group, name = sandbox.cluster.resource_group, sandbox.cluster.name
    pool = aks.agent_pools.get(group, name, POOL)
    pool.properties.orchestrator_version = version
    try:
        aks.agent_pools.begin_create_or_update(group, name, POOL, pool).result()
    except HttpResponseError as exc:
        return exc.error.code if exc.error else str(exc)
    return "Succeeded"


def last_deliveries_succeeded(deliveries: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The deliveries once every event's last delivery succeeded (a retried event's redelivery
    included), else None."""
    last: dict[str, dict[str, Any]] = {}
    for delivery in deliveries:
        last[delivery["eventId"]] = delivery
    return deliveries if last and all(d["succeeded"] for d in last.values()) else None


def assert_every_event_handled(deliveries: list[dict[str, Any]]) -> None:
    """Every event's last delivery succeeded, and a delivery failed only by asking Event Grid to
    deliver it again (a TemporaryError: a busy claim, a run record that moved meanwhile, storage
    throttling), which the emulator's Event Grid then did."""
    by_event: dict[str, list[dict[str, Any]]] = {}
    for delivery in deliveries:
        by_event.setdefault(delivery["eventId"], []).append(delivery)
    failed = [d for d in deliveries if not d["succeeded"]]
    assert all((d["error"] or "").startswith("TemporaryError") for d in failed), failed
    assert all(attempts[-1]["succeeded"] for attempts in by_event.values()), deliveries
