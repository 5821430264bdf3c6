"""Storage faults for idempotency drills: a loopback HTTP proxy in front of one Azurite endpoint.

Point the app's connection string at the proxy (``proxied_connection_string``) and it injects what
at-least-once queues and crashing hosts do to a step, while everything else passes through:

- ``duplicate_queue``: every message put on that queue is put twice, with the same body and
  visibility delay, so the host delivers each step message twice;
- ``fail_run_transitions``: the first try of each step transition of each run (the
  ETag-conditional write of the ``runs`` table that moves a run to a new state, attempt or final
  status) fails with 503 ServerBusy. The step's side effects have happened, its state write has
  not; the executor puts the delivery back (a transient storage error is the step's own retry)
  and the step runs again.

The run store writes runs in entity-group transactions (``POST $batch``), so the failure is
answered the way the Table service answers a failed changeset: HTTP 202 with the operation's
503 inside. The SDK does not retry that (it retries a 503 on the request itself), so the app
sees the failure exactly once per transition.
A write by an operator's decision is never failed: only writes whose outbox names the step the
run was in (or that end the run from its step) are the executor's transitions.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from werkzeug.wrappers import Request, Response

from sandbox.serving import LoopbackServer
from upgrade.adapters.tables import RUN_PREFIX as RUN_ROW_PREFIX
from upgrade.domain.runs import FINAL_STATUSES
from upgrade.storage_names import RUNS_TABLE

# Hop-by-hop headers are the proxy's own business on each leg.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                         "proxy-authorization", "proxy-authenticate", "content-length", "host"})
_BOUNDARY = re.compile(rb"boundary=(changeset_[A-Za-z0-9_.\-]+)")
_REQUEST_LINE = re.compile(rb"^(POST|PUT|MERGE|PATCH|DELETE|GET) (\S+) HTTP/1\.1$")
_RESPONSE_STATUS = re.compile(rb"^HTTP/1\.1 (\d{3})", re.MULTILINE)
_ROW_KEY = re.compile(r"RowKey='([^']*)'")
_MESSAGE_TEXT = re.compile(rb"<MessageText>(.*?)</MessageText>", re.DOTALL)


@dataclass(frozen=True)
class TableWrite:
    """One operation of a Table transaction, as the proxy reads it."""

    method: str
    table: str
    row_key: str
    if_match: bool
    entity: dict


@dataclass
class _RunRow:
    """What the proxy saw last of one run record: its (state, attempt, status) and how many
    transitions have landed (the drill fails each transition number once)."""

    key: tuple[str, int, str]
    transitions: int = 0
    faulted: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class FailedTransition:
    """A step transition write the proxy failed: the run, the state it was leaving, where it went next."""

    run_id: str
    from_state: str
    to_state: str
    to_status: str


class StorageFaultProxy:
    """``with StorageFaultProxy(azurite.endpoints["table"], fail_run_transitions=True) as proxy:``
    then use ``proxy.url`` (same account path as upstream) in the app's connection string."""

    def __init__(self, upstream: str, *, duplicate_queue: str | None = None,
                 fail_run_transitions: bool = False) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.duplicate_queue = duplicate_queue
        self.fail_run_transitions = fail_run_transitions
        self.duplicated: list[str] = []  # the MessageText of every message put twice
        self.failed_transitions: list[FailedTransition] = []
        self._rows: dict[str, _RunRow] = {}
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._app, name="storage-faults")
        self.url = self._server.url

    def start(self) -> StorageFaultProxy:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> StorageFaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the proxy ----------------------------------------------------------------------------

    def _app(self, environ: dict, start_response: object) -> object:
        request = Request(environ)
        body = request.get_data()
        if self.duplicate_queue and request.method == "POST" and request.path.endswith(
                f"/{self.duplicate_queue}/messages"):
            self._forward(request, body)  # the first copy; the caller gets the second one's answer
            text = _MESSAGE_TEXT.search(body)
            with self._lock:
                self.duplicated.append(text.group(1).decode() if text else "")
        elif request.method == "POST" and request.path.endswith("/$batch"):
            return self._batch(request, body)(environ, start_response)
        return self._forward(request, body)(environ, start_response)

    def _forward(self, request: Request, body: bytes) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        # The raw target, not Werkzeug's decoded path: SharedKey signs the path as sent.
        path = request.environ.get("RAW_URI") or request.full_path
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            connection.request(request.method, path, body=body or None, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            response = Response(data, status=answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers[name] = value
            return response
        finally:
            connection.close()

    def _batch(self, request: Request, body: bytes) -> Response:
        writes = [w for w in changeset_writes(body) if w.table == RUNS_TABLE and w.row_key.startswith(RUN_ROW_PREFIX)]
        if self.fail_run_transitions:
            for write in writes:
                if self._take_fault(write):
                    return changeset_failure(503, "ServerBusy", "Injected by the storage fault drill.")
        response = self._forward(request, body)
        statuses = [int(s) for s in _RESPONSE_STATUS.findall(response.get_data())]
        if response.status_code == 202 and statuses and all(200 <= s < 300 for s in statuses):
            with self._lock:
                for write in writes:
                    self._landed(write)
        return response

    # ---- which writes are step transitions ----------------------------------------------------

    def _take_fault(self, write: TableWrite) -> bool:
        with self._lock:
            row = self._rows.get(write.row_key)
            if row is None or not write.if_match or not _is_step_transition(row.key, write.entity):
                return False
            number = row.transitions + 1
            if number in row.faulted:
                return False
            row.faulted.add(number)
            self.failed_transitions.append(FailedTransition(
                str(write.entity.get("run_id")), row.key[0], str(write.entity.get("state")),
                str(write.entity.get("status"))))
            return True

    def _landed(self, write: TableWrite) -> None:
        key = _run_key(write.entity)
        if key is None:
            return
        row = self._rows.get(write.row_key)
        if row is None:
            self._rows[write.row_key] = _RunRow(key)
        elif key != row.key:
            row.key = key
            row.transitions += 1


def _run_key(entity: dict) -> tuple[str, int, str] | None:
    if "state" not in entity or "status" not in entity:
        return None
    return str(entity["state"]), int(entity.get("attempt") or 1), str(entity["status"])


def _is_step_transition(current: tuple[str, int, str], entity: dict) -> bool:
    """The executor's transition write: it changes (state, attempt, status) and its outbox names
    the live step it comes from, or it ends the run from its step (Done/Failed carry no outbox).
    Claims change none of the three; decisions' outboxes name the decision."""
    new = _run_key(entity)
    if new is None or new == current:
        return False
    state, attempt, _ = current
    outbox = json.loads(entity["outbox"]) if entity.get("outbox") else None
    if outbox is not None:
        return outbox.get("from") == [state, attempt]
    return new[2] in FINAL_STATUSES and new[0] == state and not entity.get("claim")


def changeset_writes(body: bytes) -> list[TableWrite]:
    """The operations of a Table ``$batch`` body (one changeset of HTTP requests)."""
    match = _BOUNDARY.search(body)
    if match is None:
        return []
    writes = []
    for part in body.split(b"--" + match.group(1)):
        lines = part.replace(b"\r\n", b"\n").split(b"\n")
        starts = [i for i, line in enumerate(lines) if _REQUEST_LINE.match(line)]
        if not starts:
            continue
        method, url = _REQUEST_LINE.match(lines[starts[0]]).groups()  # type: ignore[union-attr]
        headers, rest = {}, lines[starts[0] + 1:]
        while rest and rest[0].strip():
            name, _, value = rest.pop(0).decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        text = b"\n".join(rest).strip()
        try:
            entity = json.loads(text) if text else {}
        except ValueError:
            entity = {}
        path = urlsplit(url.decode("latin-1")).path
        table = path.rsplit("/", 1)[-1].split("(", 1)[0]
        key = _ROW_KEY.search(unquote(path))
        row_key = key.group(1) if key else str(entity.get("RowKey", ""))
        writes.append(TableWrite(method.decode(), table, row_key, "if-match" in headers, entity))
    return writes


def changeset_failure(status: int, code: str, message: str) -> Response:
    """A ``$batch`` answer whose changeset failed on its first operation with ``status``."""
    batch, changeset = f"batchresponse_{uuid.uuid4()}", f"changesetresponse_{uuid.uuid4()}"
    error = json.dumps({"odata.error": {"code": code, "message": {"lang": "en-US", "value": message}}})
    text = (
        f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
        f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"HTTP/1.1 {status} {code}\r\nContent-ID: 1\r\nX-Content-Type-Options: nosniff\r\n"
        "Cache-Control: no-cache\r\nDataServiceVersion: 3.0;\r\n"
        "Content-Type: application/json;odata=minimalmetadata;streaming=true;charset=utf-8\r\n\r\n"
        f"{error}\r\n--{changeset}--\r\n--{batch}--\r\n"
    )
    return Response(text.encode(), status=202, content_type=f"multipart/mixed; boundary={batch}")


def proxied_connection_string(connection: str, *, table: str | None = None, queue: str | None = None) -> str:
    """``connection`` with its Table and/or Queue endpoint moved to a proxy's URL (same account path)."""
    parts = []
    for part in connection.split(";"):
        name, _, value = part.partition("=")
        for endpoint, base in (("TableEndpoint", table), ("QueueEndpoint", queue)):
            if name == endpoint and base:
                value = base.rstrip("/") + urlsplit(value).path
        parts.append(f"{name}={value}" if part else part)
    return ";".join(parts)
