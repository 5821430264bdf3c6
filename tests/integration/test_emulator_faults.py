"""Fault injection and request counting in front of the emulator's ARM and Kubernetes APIs, observed
through the real SDK clients."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from kubernetes.client.exceptions import ApiException

from sandbox.aks_emulator.faults import route_template

pytestmark = pytest.mark.integration

POOL_ROUTE = (
    "GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/"
    "Microsoft.ContainerService/managedClusters/{resourceName}/agentPools/{agentPoolName}"
)


@pytest.mark.parametrize(
    ("api", "path", "template"),
    [
        ("kube", "/api/v1/nodes", "/api/v1/nodes"),
        ("kube", "/api/v1/nodes/aks-pool-1-vmss000000", "/api/v1/nodes/{name}"),
        ("kube", "/api/v1/namespaces/default/pods/app-a-x/eviction", "/api/v1/namespaces/{namespace}/pods/{name}/eviction"),
        ("kube", "/api/v1/namespaces/default", "/api/v1/namespaces/{name}"),
        ("kube", "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
         "/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets"),
        ("kube", "/version", "/version"),
        ("arm", "/subscriptions/s/providers/Microsoft.ContainerService/locations/eastus/operations/1234",
         "/subscriptions/{subscriptionId}/providers/Microsoft.ContainerService/locations/{location}/operations/{operationId}"),
        ("arm", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/"
         "agentPools/p/upgradeProfiles/default",
         "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerService/"
         "managedClusters/{resourceName}/agentPools/{agentPoolName}/upgradeProfiles/default"),
    ],
)
def test_requests_are_counted_under_their_route_template(api, path, template):
    # GIVEN a request path WHEN it is classified THEN names are replaced by placeholders
    assert route_template(api, path) == template


def _statuses_of_pool_reads(emu, aks, reads: int) -> list[int]:
    cluster = emu.clusters()[0]
    statuses = []
    for _ in range(reads):
        try:
            aks.agent_pools.get(cluster.resource_group, cluster.name, "nodepool1")
            statuses.append(200)
        except HttpResponseError as error:
            statuses.append(error.status_code)
    return statuses


def test_fault_injection_is_deterministic_for_a_seed(emulator, aks_client):
    # GIVEN two emulators with the same seed and one with another, each failing half the pool reads
    runs = {}
    for label, seed in (("first", 7), ("again", 7), ("other", 8)):
        emu = emulator("seed-rolling", fault_seed=seed)
        emu.faults.add("arm", "GET */agentPools/*", rate_429=0.2, rate_500=0.15, rate_503=0.15,
                       retry_after_seconds=0)
        aks = aks_client(emu, retry_total=0)

        # WHEN the same requests are made
        runs[label] = _statuses_of_pool_reads(emu, aks, 30)

    # THEN the same seed fails the same requests the same way; another seed does not
    assert runs["first"] == runs["again"]
    assert runs["first"] != runs["other"]
    assert {429, 500, 503} <= set(runs["first"]) and 200 in runs["first"]


def test_the_sdk_retries_through_transient_faults_and_every_attempt_is_counted(emulator, aks_client):
    # GIVEN half of the pool reads answer 503 with Retry-After 0
    emu = emulator("seed-rolling", fault_seed=3)
    emu.faults.add("arm", "GET */agentPools/*", rate_503=0.5, retry_after_seconds=0)
    cluster = emu.clusters()[0]
    aks = aks_client(emu, retry_total=20, retry_status=20)
    emu.faults.reset_counts()

    # WHEN the SDK reads the pool 10 times
    for _ in range(10):
        assert aks.agent_pools.get(cluster.resource_group, cluster.name, "nodepool1").name == "nodepool1"

    # THEN all succeed, and the counter saw the retries too
    assert emu.faults.counts("arm")[POOL_ROUTE] > 10


def test_429_carries_retry_after_and_an_arm_error(emulator, aks_client):
    # GIVEN every ARM pool read is throttled
    emu = emulator("seed-rolling")
    emu.faults.add("arm", "GET */agentPools/*", rate_429=1.0, retry_after_seconds=7)
    cluster = emu.clusters()[0]

    # WHEN the SDK reads the pool without retries
    with pytest.raises(HttpResponseError) as failure:
        aks_client(emu, retry_total=0).agent_pools.get(cluster.resource_group, cluster.name, "nodepool1")

    # THEN the answer is ARM's throttling shape
    assert failure.value.status_code == 429
    assert failure.value.response.headers["Retry-After"] == "7"
    assert failure.value.error.code == "TooManyRequests"


def test_kubernetes_faults_answer_a_status_and_are_counted(emulator, aks_client, kube_client):
    # GIVEN every node list on the Kubernetes API fails with 500
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    core = kube_client(aks_client(emu), cluster)
    emu.faults.add("kube", "GET /api/v1/nodes", rate_500=1.0)
    emu.faults.reset_counts()

    # WHEN the kubernetes client lists nodes, and reads one namespace
    with pytest.raises(ApiException) as failure:
        core.list_node()
    core.read_namespace("default")

    # THEN the failure is a Kubernetes Status, and both requests are counted per route
    assert failure.value.status == 500
    assert '"kind": "Status"' in failure.value.body
    assert emu.faults.counts("kube") == {"GET /api/v1/nodes": 1, "GET /api/v1/namespaces/{name}": 1}


def test_counts_are_per_api_and_resettable(emulator, aks_client):
    # GIVEN an emulator whose counters are reset
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    emu.faults.reset_counts()

    # WHEN the SDK reads the pool 3 times and lists pools once
    for _ in range(3):
        aks.agent_pools.get(cluster.resource_group, cluster.name, "nodepool1")
    list(aks.agent_pools.list(cluster.resource_group, cluster.name))

    # THEN each route counts its own requests, and reset clears them
    counts = emu.faults.counts("arm")
    assert counts[POOL_ROUTE] == 3
    assert counts[POOL_ROUTE.rsplit("/", 1)[0]] == 1
    assert emu.faults.total("arm") == 4
    assert emu.faults.total("kube") == 0
    emu.faults.reset_counts()
    assert emu.faults.counts() == {}


def test_added_latency_is_injected_only_where_the_rule_matches_and_still_answers(emulator, aks_client):
    # GIVEN ARM reads of one pool delayed by 10 ms (pool listing and the Kubernetes API untouched)
    emu = emulator("seed-rolling")
    emu.faults.add("arm", "GET */agentPools/*", latency_seconds=0.01)
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    emu.faults.reset_counts()

    # WHEN the pool is read twice and the pools listed once
    reads = [aks.agent_pools.get(cluster.resource_group, cluster.name, "nodepool1").name for _ in range(2)]
    listed = [p.name for p in aks.agent_pools.list(cluster.resource_group, cluster.name)]

    # THEN every call answers normally, and the injector delayed exactly the two matching reads
    # (it records what it added: benchmarks measure the delay, tests do not)
    assert reads == ["nodepool1", "nodepool1"]
    assert "nodepool1" in listed
    assert emu.faults.delayed_requests("arm") == {POOL_ROUTE: 2}
    assert emu.faults.added_latency("arm") == {POOL_ROUTE: pytest.approx(0.02)}
    assert emu.faults.delayed_requests("kube") == {}
