"""The facts a blue-green run records for a large pool: 1,000 blue nodes and 30,000 application
pods on blue (plus as many of the same workloads on another pool), built the way ``cordon_blue``
builds them. Used to prove a run record stays within Azure Table's limits at that size."""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from upgrade.domain.bluegreen import batch_facts
from upgrade.domain.model import Pod, Workload
from upgrade.domain.validation import blue_origin_workloads

NODES = 1000
PODS_ON_BLUE = 30_000
REPLICAS_ON_BLUE = 10


@cache
def large_pool_facts() -> dict[str, Any]:
    blue = [f"aks-userpool1-12345678-vmss{i:06x}" for i in range(NODES)]
    other = [f"aks-userpool2-87654321-vmss{i:06x}" for i in range(NODES)]
    pods: list[Pod] = []
    workloads: list[Workload] = []
    for w in range(PODS_ON_BLUE // REPLICAS_ON_BLUE):
        namespace, name = f"team-{w % 50:02d}", f"service-{w:05d}"
        workloads.append(Workload(namespace, "Deployment", name, 2 * REPLICAS_ON_BLUE, 2 * REPLICAS_ON_BLUE,
                                  replica_sets=(f"{name}-7d9f8b6c5d",)))
        for r in range(REPLICAS_ON_BLUE):
            for nodes, tag in ((blue, "b"), (other, "o")):
                pods.append(Pod(namespace, f"{name}-7d9f8b6c5d-{tag}{r:04x}", str(uuid.uuid4()),
                                nodes[(w * REPLICAS_ON_BLUE + r) % NODES], owner_kind="ReplicaSet",
                                owner_name=f"{name}-7d9f8b6c5d"))
    origin = blue_origin_workloads(pods, blue, workloads)
    return {**batch_facts(blue, "10%", blue), "blueOrigin": [o.to_dict() for o in origin]}
