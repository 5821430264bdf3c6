"""Run records stay within Azure Table's limits (64 KiB a property, 1 MiB an entity) at any pool
size, and a write that would not fit is refused clearly before it is sent."""

from __future__ import annotations

import os

import pytest

from tests.fakes import DEFAULT_NOW, FakePlatform
from tests.large_run import PODS_ON_BLUE, large_pool_facts
from upgrade.adapters.tables import (
    INLINE_CHARS,
    MAX_ENTITY_BYTES,
    MAX_PROPERTY_BYTES,
    check_entity_size,
    pack_entity,
    unpack_entity,
)
from upgrade.domain.runs import MAX_REASON_CHARS, HistoryEntry, RunRecord
from upgrade.domain.steps import Next, StepMessage
from upgrade.domain.validation import BlueOrigin, uid_digest
from upgrade.errors import PermanentError
from upgrade.services import step_runner
from upgrade.services.registry import StepSpec
from upgrade.services.step_runner import run_step_message

CLUSTER = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-aks/providers/"
           "Microsoft.ContainerService/managedClusters/aks-prod")


def a_run(**changes) -> RunRecord:
    fields = {"run_id": "bg-1", "kind": "blue-green", "cluster": CLUSTER, "pool": "userpool1",
              "state": "bluegreen.drain_batch", "status": "running", "created_at": DEFAULT_NOW,
              "updated_at": DEFAULT_NOW, **changes}
    return RunRecord(**fields)


def entity_bytes(entity: dict) -> int:
    return sum(8 + 2 * len(k) + (len(v) if isinstance(v, bytes) else len(str(v).encode("utf-16-le")))
               for k, v in entity.items())


def test_a_1000_node_30000_pod_pool_fits_one_entity_and_reads_back_exactly():
    # GIVEN the facts a blue-green run records when it cordons a 1,000-node pool with 30,000 pods
    facts = large_pool_facts()
    run = a_run(facts=facts)
    flat = run.for_storage()
    assert 2 * len(flat["facts"]) > MAX_ENTITY_BYTES  # as plain text (UTF-16) over the whole entity
    # WHEN it is written as the Table adapter writes it
    packed = pack_entity(flat)
    check_entity_size(packed, "run bg-1")  # raises when over a limit
    # THEN every property and the entity fit, and reading it back gives the same record
    assert all(len(v) <= MAX_PROPERTY_BYTES for v in packed.values() if isinstance(v, bytes))
    assert entity_bytes(packed) < MAX_ENTITY_BYTES
    assert RunRecord.from_storage(unpack_entity(packed), None).facts == facts
    # and the fake store (which keeps the adapter's limits) takes it too
    FakePlatform().runs.create(run)


def test_blue_origin_keeps_pod_uids_as_short_digests_that_still_tell_pods_apart():
    facts = large_pool_facts()
    origin = [BlueOrigin.from_dict(o) for o in facts["blueOrigin"]]
    digests = {d for o in origin for d in o.pods_elsewhere}
    assert len(digests) == PODS_ON_BLUE  # one per pod elsewhere: no collision at this size
    assert all(len(d) == 12 for d in digests)
    uid = "0f6c2f8e-8c1d-4f7e-9d55-2b1a3c4d5e6f"
    assert BlueOrigin.from_dict(BlueOrigin(origin[0].key, 1, frozenset({uid})).to_dict()).pods_elsewhere == {
        uid_digest(uid)}


def test_short_text_stays_inline_and_long_text_is_compressed_in_chunks():
    packed = pack_entity({"PartitionKey": "run", "RowKey": "run|x", "reason": "r" * INLINE_CHARS,
                          "facts": "f" * (INLINE_CHARS + 1)})
    assert packed["reason"] == "r" * INLINE_CHARS
    assert "facts" not in packed and packed["facts__zn"] == 1 and isinstance(packed["facts__z0"], bytes)
    assert unpack_entity(packed)["facts"] == "f" * (INLINE_CHARS + 1)


@pytest.mark.parametrize(
    ("entity", "message"),
    [
        ({"reason": "x" * (MAX_PROPERTY_BYTES // 2 + 1)}, "property reason is .* over Azure Table's 64 KiB"),
        ({f"p{i}": os.urandom(60 * 1024) for i in range(18)}, "over Azure Table's 1 MiB per entity"),
    ],
    ids=["property", "entity"],
)
def test_a_write_over_a_limit_is_refused_naming_it(entity, message):
    with pytest.raises(PermanentError, match=message) as caught:
        check_entity_size(entity, "run bg-1")
    assert caught.value.code == "RecordTooLarge"


def test_facts_that_cannot_fit_are_refused_and_the_run_fails_with_that_reason(monkeypatch):
    # GIVEN a step that returns facts no entity can hold (random bytes do not compress)
    huge = os.urandom(1536 * 1024).hex()
    registry = {"work": StepSpec("work", lambda ctx: Next("after", facts={"blob": huge}))}
    monkeypatch.setattr(step_runner, "step_registry", lambda: registry)
    platform = FakePlatform(allowed_clusters=frozenset({CLUSTER}))
    platform.runs.create(a_run(state="work"))
    message = StepMessage(v=1, run_id="bg-1", step="work", cluster=CLUSTER, pool="userpool1")
    # WHEN it runs
    report = run_step_message(message.to_json(), platform, message_id="m1")
    # THEN nothing escapes to the host: the run is failed with the reason, and alerted on
    assert report.result == "refused"
    run = platform.runs.get("bg-1")
    assert run.status == "failed" and "RecordTooLarge" not in run.reason and "1 MiB" in run.reason
    assert [a.kind for a in platform.alerts.published] == ["run.failed"]


def test_reasons_are_cut_to_a_bounded_length():
    run = a_run().evolve(now=DEFAULT_NOW, reason="y" * 100_000)
    assert len(run.reason) <= MAX_REASON_CHARS and run.reason.endswith("(100000 characters, cut)")
    entry = HistoryEntry("bg-1", DEFAULT_NOW, "work", 1, "failed", "z" * 100_000)
    check_entity_size(entry.for_storage(), "history")
