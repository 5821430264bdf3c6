"""The run store and the state store over Azure Table storage (azure-data-tables).

Table ``runs``, one partition ``run``:
- a run record per run: RowKey ``run|<run_id>``;
- a lock per cluster/pool with an active run: RowKey ``active|<sha256(cluster, pool)>``, holding
  the run id and ``due_at``, when the run's live step must have started by (``live_due``).
  Creating an active run inserts its lock and its record in one entity-group transaction, so a
  second run for the same pool fails atomically; every update of an active run rewrites its
  lock's ``due_at`` in the same transaction, and the update that moves the run to a final status
  deletes the lock. Both live in one partition because a transaction cannot span partitions.
  The locks are the index of active runs: the reconciler's query for overdue runs reads only
  them (``overdue``), never every run.
Table ``runhistory``: PartitionKey run id, RowKey ``<UTC time>|<attempt>|<step>|<random>`` so a
run's rows read back in time order.
Table ``alertstate``: the StateStore's small documents (JSON in ``value``), keys escaped because
Table keys forbid ``/ \\ # ?`` (cluster ARM ids are full of slashes).

Every write of an existing entity is conditional on its ETag (MatchConditions.IfNotModified).

Table storage holds at most 64 KiB per property and 1 MiB per entity. A text property longer
than ``INLINE_CHARS`` (a large run's ``facts``) is stored zlib-compressed in binary chunks
(``<name>__z0``, ``<name>__z1``…, count in ``<name>__zn``) and read back transparently; every
write is checked against both limits first and refused with PermanentError ``RecordTooLarge``
naming the property, never sent for the service to reject half-way through a run.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from upgrade.adapters.storage import managed_identity_or_refuse, storage_error
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.errors import Conflict, NotFound, PermanentError
from upgrade.storage_names import HISTORY_TABLE, RUNS_TABLE, STATE_TABLE

if TYPE_CHECKING:
    from upgrade.settings import Settings

RUN_PARTITION = "run"
RUN_PREFIX = "run|"
LOCK_PREFIX = "active|"
# A lock pointing at a run that is final or gone is left over from a bug or a manual edit: taken over.
_MAX_CREATE_ATTEMPTS = 3

# Bounded entities: Azure Table's limits, and the size from which text is stored compressed.
MAX_PROPERTY_BYTES = 64 * 1024
MAX_ENTITY_BYTES = 1024 * 1024
INLINE_CHARS = 8 * 1024
_CHUNK_BYTES = 60 * 1024
_CHUNKS = "__zn"
# due_at of a run that expects no message (paused, stuck): after every real time.
NEVER_DUE = "9999-12-31T23:59:59.999999Z"

_KEY_ESCAPES = {"%": "%25", "/": "%2F", "\\": "%5C", "#": "%23", "?": "%3F"}


def escape_key(key: str) -> str:
    """A Table-safe PartitionKey/RowKey for any string (reversible)."""
    return "".join(_KEY_ESCAPES.get(ch, ch) for ch in key)


_UNESCAPE = {escaped: char for char, escaped in _KEY_ESCAPES.items()}
_ESCAPED = re.compile("|".join(re.escape(e) for e in _UNESCAPE))


def unescape_key(key: str) -> str:
    return _ESCAPED.sub(lambda m: _UNESCAPE[m.group(0)], key)


def pool_lock_key(cluster: str, pool: str | None) -> str:
    digest = hashlib.sha256(f"{cluster.lower()}\n{(pool or '').lower()}".encode()).hexdigest()
    return LOCK_PREFIX + digest


def table_service(settings: Settings) -> TableServiceClient:
    """Connection string when one is set (local, Azurite), else the managed identity."""
    if settings.storage_connection:
        return TableServiceClient.from_connection_string(settings.storage_connection)
    credential = managed_identity_or_refuse(settings, settings.storage_table_uri, "tableServiceUri")
    return TableServiceClient(settings.storage_table_uri, credential=credential)


def ensure_table(service: TableServiceClient, name: str) -> TableClient:
    """The table's client, creating the table if missing (infra creates it in Azure; Azurite starts empty)."""
    try:
        service.create_table(name)
    except ResourceExistsError:
        pass
    except AzureError as exc:
        raise storage_error(f"create table {name}", exc) from exc
    return service.get_table_client(name)


class TableRunStore:
    """RunStore over the ``runs`` and ``runhistory`` tables."""

    def __init__(self, runs: TableClient, history: TableClient) -> None:
        self._runs = runs
        self._history = history

    @classmethod
    def from_settings(cls, settings: Settings) -> TableRunStore:
        service = table_service(settings)
        return cls(ensure_table(service, RUNS_TABLE), ensure_table(service, HISTORY_TABLE))

    # ---- runs -----------------------------------------------------------------------------

    def create(self, run: RunRecord) -> RunRecord:
        entity = _run_entity(run)
        for _ in range(_MAX_CREATE_ATTEMPTS):
            if not run.active:
                return self._insert_run(run, entity)
            lock = _lock_entity(run)
            try:
                results = self._runs.submit_transaction([("create", lock), ("create", entity)])
            except TableTransactionError as exc:
                if exc.index == 1:
                    raise Conflict(f"run {run.run_id} already exists", code=run.run_id) from exc
                if not _is_conflict(exc):
                    raise storage_error(f"create run {run.run_id}", exc) from exc
                self._raise_if_pool_taken(run)  # or release a lock left by a finished run and try again
                continue
            except AzureError as exc:
                raise storage_error(f"create run {run.run_id}", exc) from exc
            return _with_etag(run, results[1])
        raise Conflict(f"run {run.run_id}: the pool's lock kept changing; try again")

    def _insert_run(self, run: RunRecord, entity: dict[str, Any]) -> RunRecord:
        try:
            return _with_etag(run, self._runs.create_entity(entity))
        except ResourceExistsError as exc:
            raise Conflict(f"run {run.run_id} already exists", code=run.run_id) from exc
        except AzureError as exc:
            raise storage_error(f"create run {run.run_id}", exc) from exc

    def _raise_if_pool_taken(self, run: RunRecord) -> None:
        lock = self._read(pool_lock_key(run.cluster, run.pool))
        if lock is None:
            return
        holder = self._read(RUN_PREFIX + lock["run_id"])
        if holder is not None and RunRecord.from_storage(unpack_entity(holder), None).active:
            raise Conflict(
                f"run {lock['run_id']} is already active on {run.cluster} pool {run.pool or '(cluster)'}",
                code=lock["run_id"],
            )
        try:
            self._runs.delete_entity(
                RUN_PARTITION, lock["RowKey"], etag=lock.metadata["etag"], match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            pass  # someone else changed it: the next attempt reads it again

    def get(self, run_id: str) -> RunRecord:
        entity = self._read(RUN_PREFIX + run_id)
        if entity is None:
            raise NotFound(f"run {run_id} not found")
        return RunRecord.from_storage(unpack_entity(entity), entity.metadata["etag"])

    def update(self, run: RunRecord) -> RunRecord:
        if run.etag is None:
            raise Conflict(f"run {run.run_id} was never read from the store: no ETag to update against")
        replace_run = ("update", _run_entity(run),
                       {"mode": UpdateMode.REPLACE, "etag": run.etag, "match_condition": MatchConditions.IfNotModified})
        operations = [replace_run]
        if run.active:
            operations.append(("upsert", _lock_entity(run), {"mode": UpdateMode.MERGE}))
        else:
            lock = self._read(pool_lock_key(run.cluster, run.pool))
            if lock is not None and lock["run_id"] == run.run_id:
                operations.append(
                    ("delete", lock, {"etag": lock.metadata["etag"], "match_condition": MatchConditions.IfNotModified})
                )
        try:
            results = self._runs.submit_transaction(operations)
        except TableTransactionError as exc:
            if _is_conflict(exc) or exc.status_code == 404:
                if exc.index == 0 and exc.status_code == 404:
                    raise NotFound(f"run {run.run_id} not found") from exc
                raise Conflict(f"run {run.run_id} changed since it was read (ETag mismatch)") from exc
            raise storage_error(f"update run {run.run_id}", exc) from exc
        except AzureError as exc:
            raise storage_error(f"update run {run.run_id}", exc) from exc
        return _with_etag(run, results[0])

    def find_active(self, cluster: str, pool: str | None) -> RunRecord | None:
        """The active run holding ``pool`` of ``cluster``; pool None is the cluster-wide run."""
        lock = self._read(pool_lock_key(cluster, pool))
        if lock is None:
            return None
        try:
            run = self.get(lock["run_id"])
        except NotFound:
            return None
        return run if run.active else None

    def overdue(self, before: datetime, *, limit: int = 100) -> Sequence[RunRecord]:
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and due_at lt @before"
        parameters = {"pk": RUN_PARTITION, "lo": LOCK_PREFIX, "hi": LOCK_PREFIX[:-1] + chr(ord(LOCK_PREFIX[-1]) + 1),
                      "before": due_text(before)}
        try:
            locks = list(self._runs.query_entities(query, parameters=parameters, select=["run_id", "due_at"]))
        except AzureError as exc:
            raise storage_error("list overdue runs", exc) from exc
        runs = []
        for lock in sorted(locks, key=lambda e: e["due_at"])[:limit]:
            try:
                run = self.get(lock["run_id"])
            except NotFound:
                continue
            due = run.live_due()
            if due is not None and due < before:
                runs.append(run)
        return runs

    def list_runs(self, *, cluster: str | None = None, limit: int = 50) -> Sequence[RunRecord]:
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        parameters = {"pk": RUN_PARTITION, "lo": RUN_PREFIX, "hi": RUN_PREFIX[:-1] + chr(ord(RUN_PREFIX[-1]) + 1)}
        if cluster is not None:
            query += " and cluster_key eq @cluster"
            parameters["cluster"] = cluster.lower()
        try:
            entities = list(self._runs.query_entities(query, parameters=parameters))
        except AzureError as exc:
            raise storage_error("list runs", exc) from exc
        runs = [RunRecord.from_storage(unpack_entity(e), e.metadata["etag"]) for e in entities]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)[:limit]

    def _read(self, row_key: str) -> Any:
        try:
            return self._runs.get_entity(RUN_PARTITION, row_key)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise storage_error(f"read {row_key}", exc) from exc

    # ---- history --------------------------------------------------------------------------

    def append_history(self, entry: HistoryEntry) -> None:
        at = entry.at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        row_key = escape_key(f"{at}|{entry.attempt:06d}|{entry.step}|{uuid.uuid4().hex[:8]}")
        entity = {"PartitionKey": escape_key(entry.run_id), "RowKey": row_key, **entry.for_storage()}
        check_entity_size(entity, f"history of run {entry.run_id}")
        try:
            self._history.create_entity(entity)
        except AzureError as exc:
            raise storage_error(f"append history of run {entry.run_id}", exc) from exc

    def history(self, run_id: str) -> Sequence[HistoryEntry]:
        try:
            entities = self._history.query_entities("PartitionKey eq @pk", parameters={"pk": escape_key(run_id)})
            return [HistoryEntry.from_storage(e) for e in entities]
        except AzureError as exc:
            raise storage_error(f"read history of run {run_id}", exc) from exc


def _run_entity(run: RunRecord) -> dict[str, Any]:
    # cluster_key: ARM ids compare case-insensitively, Table filters do not.
    entity = pack_entity({"PartitionKey": RUN_PARTITION, "RowKey": RUN_PREFIX + run.run_id,
                          "cluster_key": run.cluster.lower(), **run.for_storage()})
    check_entity_size(entity, f"run {run.run_id}")
    return entity


def _lock_entity(run: RunRecord) -> dict[str, Any]:
    due = run.live_due()
    return {"PartitionKey": RUN_PARTITION, "RowKey": pool_lock_key(run.cluster, run.pool), "run_id": run.run_id,
            "cluster": run.cluster, "pool": run.pool or "", "due_at": due_text(due) if due else NEVER_DUE}


def due_text(moment: datetime) -> str:
    """A UTC time as fixed-width text, so Table's string comparison orders it as time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pack_entity(entity: dict[str, Any]) -> dict[str, Any]:
    """Text properties longer than INLINE_CHARS compressed into binary chunks (see the module doc)."""
    packed: dict[str, Any] = {}
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey") or not isinstance(value, str) or len(value) <= INLINE_CHARS:
            packed[name] = value
            continue
        data = zlib.compress(value.encode("utf-8"), 6)
        chunks = [data[i:i + _CHUNK_BYTES] for i in range(0, len(data), _CHUNK_BYTES)]
        packed.update({f"{name}__z{i}": chunk for i, chunk in enumerate(chunks)})
        packed[name + _CHUNKS] = len(chunks)
    return packed


def unpack_entity(entity: Any) -> dict[str, Any]:
    """The entity as written before ``pack_entity``."""
    unpacked = dict(entity)
    for key in [k for k in unpacked if k.endswith(_CHUNKS)]:
        name = key.removesuffix(_CHUNKS)
        count = int(unpacked.pop(key))
        data = b"".join(bytes(unpacked.pop(f"{name}__z{i}")) for i in range(count))
        unpacked[name] = zlib.decompress(data).decode("utf-8")
    return unpacked


def _property_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-16-le")) + 4
    if isinstance(value, (bytes, bytearray)):
        return len(value) + 4
    return 8


def entity_bytes(entity: dict[str, Any]) -> int:
    """An entity's size as Azure Table counts it: each name in UTF-16, text in UTF-16, binary as is."""
    return 4 + sum(8 + 2 * len(name) + _property_bytes(value) for name, value in entity.items())


def check_entity_size(entity: dict[str, Any], what: str) -> None:
    """Refuse an entity over Azure Table's limits (64 KiB a property, 1 MiB in all) before sending it."""
    for name, value in entity.items():
        size = _property_bytes(value)
        if size > MAX_PROPERTY_BYTES:
            raise PermanentError(f"{what}: property {name} is {size} bytes, over Azure Table's 64 KiB per property",
                                 code="RecordTooLarge")
    total = entity_bytes(entity)
    if total > MAX_ENTITY_BYTES:
        largest = max(entity, key=lambda n: _property_bytes(entity[n]))
        raise PermanentError(f"{what}: {total} bytes, over Azure Table's 1 MiB per entity (largest property: {largest})",
                             code="RecordTooLarge")


def _with_etag(run: RunRecord, metadata: Any) -> RunRecord:
    return replace(run, etag=metadata["etag"])


def _is_conflict(exc: TableTransactionError) -> bool:
    return exc.status_code in (409, 412)


class TableStateStore:
    """StateStore over the ``alertstate`` table: one JSON document per (partition, key)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    @classmethod
    def from_settings(cls, settings: Settings) -> TableStateStore:
        return cls(ensure_table(table_service(settings), STATE_TABLE))

    def get(self, partition: str, key: str) -> tuple[dict[str, Any], str] | None:
        try:
            entity = self._table.get_entity(escape_key(partition), escape_key(key))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise storage_error(f"read state {partition}/{key}", exc) from exc
        return json.loads(entity["value"]), entity.metadata["etag"]

    def put(self, partition: str, key: str, value: dict[str, Any], *, etag: str | None) -> str:
        entity = {"PartitionKey": escape_key(partition), "RowKey": escape_key(key), "value": json.dumps(value)}
        check_entity_size(entity, f"state {partition}/{key}")
        try:
            if etag is None:
                metadata = self._table.create_entity(entity)
            else:
                metadata = self._table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as exc:
            raise Conflict(f"state {partition}/{key} changed since it was read") from exc
        except AzureError as exc:
            raise storage_error(f"write state {partition}/{key}", exc) from exc
        return metadata["etag"]

    def delete(self, partition: str, key: str, *, etag: str | None = None) -> None:
        entity = {"PartitionKey": escape_key(partition), "RowKey": escape_key(key)}
        try:
            if etag is None:
                self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])  # gone already is fine
            else:
                # A one-operation transaction, because delete_entity hides a 404: a conditional
                # delete must tell "removed by someone else" apart from "removed by me".
                self._table.submit_transaction(
                    [("delete", entity, {"etag": etag, "match_condition": MatchConditions.IfNotModified})]
                )
        except TableTransactionError as exc:
            raise Conflict(f"state {partition}/{key} changed or was removed since it was read") from exc
        except AzureError as exc:
            raise storage_error(f"delete state {partition}/{key}", exc) from exc

    def list(self, partition: str) -> Sequence[tuple[str, dict[str, Any]]]:
        try:
            entities = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": escape_key(partition)})
            return sorted((unescape_key(e["RowKey"]), json.loads(e["value"])) for e in entities)
        except AzureError as exc:
            raise storage_error(f"list state {partition}", exc) from exc
