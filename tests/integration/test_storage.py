"""The storage adapters against Azurite: the step queue and the Table run/state stores."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.queue import QueueClient

from sandbox.devhost_queue import decode_queue_message
from tests.integration.conftest_storage import TEST_CLUSTER
from upgrade.adapters.queue import AzureStepQueue
from upgrade.adapters.tables import TableRunStore, TableStateStore, escape_key, unescape_key
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.domain.steps import StepMessage
from upgrade.errors import Conflict, NotFound, PermanentError
from upgrade.storage_names import POISON_QUEUE, STEP_QUEUE

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
OTHER_CLUSTER = TEST_CLUSTER.replace("aks-prod", "aks-test")


def raw_queue(settings, name: str) -> QueueClient:
    """A client that does no encoding: it sees the bytes the Functions host sees."""
    return QueueClient.from_connection_string(settings.storage_connection, name)


def a_run(run_id: str = "run-1", *, cluster: str = TEST_CLUSTER, pool: str | None = "user1",
          status: str = "running") -> RunRecord:
    return RunRecord(run_id=run_id, kind="rolling", cluster=cluster, pool=pool, state="start", status=status,
                     created_at=NOW, updated_at=NOW, target_version="1.31.0", options={"maxSurge": "1"})


# ---- queue ------------------------------------------------------------------------------------


def test_a_sent_step_message_is_base64_and_decodes_as_the_host_decodes_it(clean_storage):
    # GIVEN the queue adapter
    queue = AzureStepQueue.from_settings(clean_storage)
    message = StepMessage(v=1, run_id="run-1", step="ping", cluster=TEST_CLUSTER, args={"note": "ünïcode ✓"})

    # WHEN a message is sent
    queue.send(message)

    # THEN the stored text is base64, and the host's base64 decoding gives back the JSON
    stored = raw_queue(clean_storage, STEP_QUEUE).receive_message()
    assert stored is not None
    assert stored.content != message.to_json()
    assert decode_queue_message(stored.content, "base64") == message.to_json().encode()
    assert StepMessage.model_validate_json(decode_queue_message(stored.content, "base64")) == message


def test_a_delayed_message_stays_invisible_for_its_delay(clean_storage):
    # GIVEN a message sent with a two-second delay
    queue = AzureStepQueue.from_settings(clean_storage)
    queue.send(StepMessage(v=1, run_id="run-1", step="ping", cluster=TEST_CLUSTER), delay_seconds=1.2)
    steps = raw_queue(clean_storage, STEP_QUEUE)

    # WHEN the queue is read at once, THEN nothing is visible
    assert steps.receive_message() is None

    # WHEN the delay has passed, THEN it is delivered
    deadline = time.monotonic() + 10
    delivered = None
    while delivered is None and time.monotonic() < deadline:
        time.sleep(0.25)
        delivered = steps.receive_message()
    assert delivered is not None


def test_send_to_poison_puts_the_body_on_the_poison_queue_as_is(clean_storage):
    queue = AzureStepQueue.from_settings(clean_storage)
    queue.send_to_poison("not json {")
    stored = raw_queue(clean_storage, POISON_QUEUE).receive_message()
    assert stored is not None
    assert decode_queue_message(stored.content, "base64") == b"not json {"


def test_step_messages_never_expire(clean_storage):
    # A step parked for an operator's decision may wait longer than the default seven-day TTL.
    AzureStepQueue.from_settings(clean_storage).send(StepMessage(v=1, run_id="r", step="ping", cluster=TEST_CLUSTER))
    peeked = raw_queue(clean_storage, STEP_QUEUE).peek_messages()[0]
    assert peeked.expires_on.year >= 9999


# ---- run store --------------------------------------------------------------------------------


def test_a_run_round_trips_with_an_etag(clean_storage):
    store = TableRunStore.from_settings(clean_storage)
    created = store.create(a_run())
    assert created.etag
    assert store.get("run-1") == created


def test_get_of_a_missing_run_raises_not_found(clean_storage):
    with pytest.raises(NotFound):
        TableRunStore.from_settings(clean_storage).get("nope")


def test_an_update_with_a_stale_etag_is_a_conflict(clean_storage):
    # GIVEN two workers that read the same run
    store = TableRunStore.from_settings(clean_storage)
    first = store.create(a_run())
    second = store.get("run-1")

    # WHEN the first writes, THEN the second's write (same old ETag) conflicts
    moved = store.update(first.evolve(now=NOW + timedelta(seconds=1), state="drain", facts={"node": "n1"}))
    assert moved.etag != first.etag
    with pytest.raises(Conflict):
        store.update(second.evolve(now=NOW, state="other"))
    assert store.get("run-1").state == "drain"
    assert store.get("run-1").facts == {"node": "n1"}


def test_one_active_run_per_pool(clean_storage):
    # GIVEN an active run on pool user1
    store = TableRunStore.from_settings(clean_storage)
    first = store.create(a_run("run-1"))

    # WHEN a second run starts on the same pool (cluster id in another letter case)
    # THEN it is refused naming the active run
    with pytest.raises(Conflict) as refused:
        store.create(a_run("run-2", cluster=TEST_CLUSTER.upper()))
    assert refused.value.code == "run-1"
    assert store.find_active(TEST_CLUSTER, "user1") == first
    with pytest.raises(NotFound):
        store.get("run-2")  # the refused run left no record

    # AND other pools and clusters are free
    store.create(a_run("run-3", pool="user2"))
    store.create(a_run("run-4", cluster=OTHER_CLUSTER))

    # WHEN the first run reaches a final status, THEN the pool is free again
    store.update(first.evolve(now=NOW, status="succeeded"))
    assert store.find_active(TEST_CLUSTER, "user1") is None
    assert store.create(a_run("run-5")).run_id == "run-5"
    assert store.find_active(TEST_CLUSTER, "user1").run_id == "run-5"


def test_a_run_id_is_used_once(clean_storage):
    store = TableRunStore.from_settings(clean_storage)
    store.create(a_run("run-1", status="succeeded"))
    with pytest.raises(Conflict):
        store.create(a_run("run-1", pool="user2"))


def test_an_update_that_conflicts_keeps_the_pool_locked(clean_storage):
    # GIVEN a run finished by one writer with a stale ETag
    store = TableRunStore.from_settings(clean_storage)
    first = store.create(a_run())
    store.update(first.evolve(now=NOW, state="drain"))

    # WHEN the stale write tries to finish it, THEN nothing changes: the run and its lock stay
    with pytest.raises(Conflict):
        store.update(first.evolve(now=NOW, status="failed"))
    assert store.find_active(TEST_CLUSTER, "user1").state == "drain"


def test_list_runs_newest_first_filtered_by_cluster(clean_storage):
    store = TableRunStore.from_settings(clean_storage)
    for i, cluster in enumerate([TEST_CLUSTER, OTHER_CLUSTER, TEST_CLUSTER]):
        store.create(replace(a_run(f"run-{i}", cluster=cluster, status="succeeded"),
                             created_at=NOW + timedelta(minutes=i)))
    assert [r.run_id for r in store.list_runs()] == ["run-2", "run-1", "run-0"]
    assert [r.run_id for r in store.list_runs(cluster=TEST_CLUSTER.lower())] == ["run-2", "run-0"]
    assert [r.run_id for r in store.list_runs(limit=1)] == ["run-2"]


def test_history_reads_back_in_time_order(clean_storage):
    store = TableRunStore.from_settings(clean_storage)
    entries = [
        HistoryEntry("run-1", NOW + timedelta(seconds=5), "drain", 2, "retry", "PDB blocks eviction of shop/a"),
        HistoryEntry("run-1", NOW, "start", 1, "next", actor="alice@example.com"),
        HistoryEntry("run-1", NOW + timedelta(seconds=5), "drain", 2, "retry", "the same attempt seen twice"),
        HistoryEntry("run-2", NOW, "start", 1, "next"),
    ]
    for entry in entries:
        store.append_history(entry)
    assert [(h.step, h.attempt, h.outcome) for h in store.history("run-1")] == [
        ("start", 1, "next"), ("drain", 2, "retry"), ("drain", 2, "retry")
    ]
    assert store.history("run-1")[0].actor == "alice@example.com"


# ---- state store ------------------------------------------------------------------------------


def test_state_documents_are_etag_conditional(clean_storage):
    # GIVEN a document keyed by a cluster ARM id (slashes are not allowed in Table keys)
    state = TableStateStore.from_settings(clean_storage)
    etag = state.put(TEST_CLUSTER, "node/aks-user1-0#1?", {"alerted": 1}, etag=None)

    # THEN it reads back with its key and ETag
    assert state.get(TEST_CLUSTER, "node/aks-user1-0#1?") == ({"alerted": 1}, etag)
    assert state.list(TEST_CLUSTER) == [("node/aks-user1-0#1?", {"alerted": 1})]

    # AND a second insert, or a replace with an old ETag, conflicts
    with pytest.raises(Conflict):
        state.put(TEST_CLUSTER, "node/aks-user1-0#1?", {"alerted": 2}, etag=None)
    new_etag = state.put(TEST_CLUSTER, "node/aks-user1-0#1?", {"alerted": 2}, etag=etag)
    with pytest.raises(Conflict):
        state.put(TEST_CLUSTER, "node/aks-user1-0#1?", {"alerted": 3}, etag=etag)
    assert state.get(TEST_CLUSTER, "node/aks-user1-0#1?") == ({"alerted": 2}, new_etag)

    # AND delete is idempotent
    state.delete(TEST_CLUSTER, "node/aks-user1-0#1?")
    state.delete(TEST_CLUSTER, "node/aks-user1-0#1?")
    assert state.get(TEST_CLUSTER, "node/aks-user1-0#1?") is None


def test_a_conditional_delete_removes_only_what_was_read(clean_storage):
    state = TableStateStore.from_settings(clean_storage)
    read_etag = state.put("p", "k", {"v": 1}, etag=None)
    state.put("p", "k", {"v": 2}, etag=read_etag)  # another writer changed it since
    with pytest.raises(Conflict):
        state.delete("p", "k", etag=read_etag)
    assert state.get("p", "k")[0] == {"v": 2}
    _, current = state.get("p", "k")
    state.delete("p", "k", etag=current)
    assert state.get("p", "k") is None
    with pytest.raises(Conflict):  # gone already: a conditional delete lost the race
        state.delete("p", "k", etag=current)


def test_a_replace_of_a_deleted_document_conflicts(clean_storage):
    state = TableStateStore.from_settings(clean_storage)
    etag = state.put("p", "k", {}, etag=None)
    state.delete("p", "k")
    with pytest.raises(Conflict):
        state.put("p", "k", {"x": 1}, etag=etag)


@pytest.mark.parametrize("key", ["plain", "a/b\\c#d?e", "100%", "%2F literally", ""])
def test_key_escaping_is_reversible(key):
    assert unescape_key(escape_key(key)) == key
    assert not set("/\\#?") & set(escape_key(key))


# ---- bounded records and the index of active runs ------------------------------------------------


def test_a_run_of_a_1000_node_30000_pod_pool_is_written_and_read_back_whole(clean_storage):
    from tests.large_run import large_pool_facts

    # GIVEN the run store and the facts of a blue-green run on a 1,000-node pool with 30,000 pods
    store = TableRunStore.from_settings(clean_storage)
    run = store.create(a_run("big-1"))
    facts = large_pool_facts()
    # WHEN the step that cordons blue records them, and the run is read back
    store.update(run.evolve(now=NOW, facts=facts))
    # THEN Table storage took the entity and the facts come back exactly
    assert store.get("big-1").facts == facts
    assert [r.run_id for r in store.list_runs()] == ["big-1"]


def test_a_record_over_the_table_limits_is_refused_before_it_is_sent(clean_storage):
    import os

    store = TableRunStore.from_settings(clean_storage)
    run = store.create(a_run("big-2"))
    with pytest.raises(PermanentError, match="1 MiB per entity") as caught:
        store.update(run.evolve(now=NOW, facts={"noise": os.urandom(1536 * 1024).hex()}))
    assert caught.value.code == "RecordTooLarge"
    assert store.get("big-2").facts == {}


def test_overdue_lists_only_active_runs_past_their_due_time_from_the_lock_index(clean_storage):
    # GIVEN three active runs: one due long ago, one due later, one paused; and a finished one
    store = TableRunStore.from_settings(clean_storage)
    outbox = {"from": ["start", "rolling"], "message": "{}", "delay": 0}
    store.create(replace(a_run("late", pool="p1"), outbox=outbox))
    store.create(replace(a_run("later", pool="p2"), outbox={**outbox, "delay": 3600}))
    store.create(replace(a_run("parked", pool="p3", status="paused"), outbox=outbox))
    done = store.create(replace(a_run("done", pool="p4"), outbox=outbox))
    store.update(done.evolve(now=NOW, status="succeeded", outbox=None))
    # WHEN the reconciler asks for what was due ten minutes after they were written
    overdue = store.overdue(NOW + timedelta(minutes=10))
    # THEN only the late one is listed; a claim pushes a run's due time to the claim's end
    assert [r.run_id for r in overdue] == ["late"]
    late = store.get("late")
    store.update(late.evolve(now=NOW, claim={"message_id": "m", "until": (NOW + timedelta(hours=2)).isoformat()}))
    assert store.overdue(NOW + timedelta(minutes=10)) == []
    assert [r.run_id for r in store.overdue(NOW + timedelta(hours=3))] == ["later", "late"]  # oldest due first
