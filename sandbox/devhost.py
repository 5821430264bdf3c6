"""The Functions dev host: runs the functions registered in ``function_app.app`` without Core Tools.

Like the real host it sets the app settings as environment variables before it imports the
app, reads every function's bindings from ``app.get_functions()`` and the queue and HTTP
settings from host.json, then serves:
- HTTP triggers, the Event Grid webhook and the admin endpoints (sandbox.devhost_http);
- queue triggers by polling the storage queue named in the binding (sandbox.devhost_queue);
- timer triggers on their NCRONTAB schedule (sandbox.devhost_timer).
Each invocation is logged ("Executing 'Functions.<name>' ...", "Executed ... (Succeeded|Failed)")
and kept in a short in-memory list that ``GET /admin/host/invocations`` returns.

Run it with ``python -m sandbox.devhost [--settings local.settings.json] [--port 0]``; it prints
one JSON line ``{"devhost": "ready", "url": ..., "functionKey": ...}`` when it serves, and stops
cleanly on SIGTERM/SIGINT. ``--queue-option NAME=VALUE`` overrides host.json's queue settings
(seconds for time spans) so tests can poll fast and retry without waiting.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox import ping_step
from sandbox.devhost_config import REPO_ROOT, HostConfig, parse_overrides
from sandbox.easy_auth import SandboxIssuer
from upgrade.triggers.http_common import AUTH_ENABLED_SETTING

if TYPE_CHECKING:
    from sandbox.serving import LoopbackServer

log = logging.getLogger("sandbox.devhost")
MAX_INVOCATIONS_KEPT = 2000


@dataclass(frozen=True)
class FunctionEntry:
    name: str
    function: Callable[..., Any]
    bindings: tuple[dict[str, Any], ...]

    @property
    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.bindings if str(b.get("type", "")).endswith("Trigger"))

    @property
    def trigger_type(self) -> str:
        return self.trigger["type"]


@dataclass
class Invocation:
    id: str
    function: str
    reason: str
    started_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    duration_ms: float | None = None
    succeeded: bool | None = None
    error: str | None = None

    def to_public(self) -> dict[str, Any]:
        return {"id": self.id, "function": self.function, "reason": self.reason,
                "startedAt": self.started_at.isoformat(), "durationMs": self.duration_ms,
                "succeeded": self.succeeded, "error": self.error, **self.details}


def load_functions(app_ref: str) -> dict[str, FunctionEntry]:
    """Index ``module:attribute`` (a FunctionApp) the way the worker does: by its bindings."""
    module_name, _, attribute = app_ref.partition(":")
    app = getattr(importlib.import_module(module_name), attribute or "app")
    functions = {}
    for function in app.get_functions():
        bindings = tuple(json.loads(raw) for raw in function.get_raw_bindings())
        functions[function.get_function_name()] = FunctionEntry(
            function.get_function_name(), function.get_user_function(), bindings
        )
    return functions


class DevHost:
    """Hosts a FunctionApp in this process. ``app_settings`` become environment variables."""

    def __init__(
        self,
        *,
        app_settings: Mapping[str, str] | None = None,
        app_ref: str = "function_app:app",
        host_json: Path = REPO_ROOT / "host.json",
        queue_overrides: Mapping[str, object] | None = None,
        function_key: str | None = None,
        identity_key: str | None = None,
        bind: str = "127.0.0.1",
        port: int = 0,
        timers: bool = True,
    ) -> None:
        self.app_settings = dict(app_settings or {})
        self.app_ref = app_ref
        self.config = HostConfig.load(host_json, queue_overrides)
        self.function_key = function_key or secrets.token_urlsafe(24)
        self.issuer = SandboxIssuer(identity_key)  # App Service authentication's stand-in (easy_auth)
        self.bind = bind
        self.port = port
        self.run_timers = timers
        self.functions: dict[str, FunctionEntry] = {}
        self._invocations: deque[Invocation] = deque(maxlen=MAX_INVOCATIONS_KEPT)
        self._invocations_lock = threading.Lock()
        self._listeners: list = []
        self._timers: list = []
        self._server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the host is not started"
        return self._server.url

    def start(self) -> DevHost:
        from sandbox.devhost_http import DevHostHttp
        from sandbox.devhost_queue import QueueListener
        from sandbox.devhost_timer import TimerSchedule
        from sandbox.serving import LoopbackServer

        os.environ.update(self.app_settings)  # before the import, like the real host
        os.environ[AUTH_ENABLED_SETTING] = "True"  # as App Service sets it with authentication on
        self.functions = load_functions(self.app_ref)
        ping_step.register()  # the sandbox's test step: the app's own registry has no such step
        for entry in self.functions.values():
            if entry.trigger_type == "queueTrigger":
                connection_setting = entry.trigger.get("connection") or "AzureWebJobsStorage"
                connection = os.environ.get(connection_setting, "")
                if not connection:
                    raise RuntimeError(
                        f"{entry.name}: the dev host needs a connection string in {connection_setting}"
                    )
                self._listeners.append(QueueListener(
                    function_name=entry.name, connection=connection, queue_name=entry.trigger["queueName"],
                    options=self.config.queues, invoke=lambda msg, e=entry: self.invoke_queue(e, msg),
                ))
            elif entry.trigger_type == "timerTrigger" and self.run_timers:
                self._timers.append(TimerSchedule(entry, os.environ, self.invoke_timer))
        self._server = LoopbackServer(DevHostHttp(self), name="devhost-http", host=self.bind, port=self.port,
                                      quiet=False).start()
        for listener in self._listeners:
            listener.start()
        for timer in self._timers:
            timer.start()
        log.info("dev host serving %s with %d functions: %s", self.url, len(self.functions),
                 ", ".join(f"{e.name} ({e.trigger_type})" for e in self.functions.values()))
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.stop()
        for listener in self._listeners:
            listener.stop()
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> DevHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- invocation ---------------------------------------------------------------------------

    def invocations(self) -> list[Invocation]:
        with self._invocations_lock:
            return list(self._invocations)

    def invoke(self, entry: FunctionEntry, arguments: dict[str, Any], *, reason: str,
               details: dict[str, Any] | None = None) -> Any:
        """Run one function; logs and records it; re-raises a failure for the trigger's retry rules."""
        invocation = Invocation(id=str(uuid.uuid4()), function=entry.name, reason=reason,
                                started_at=datetime.now(UTC), details=details or {})
        with self._invocations_lock:
            self._invocations.append(invocation)
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", entry.name, reason, invocation.id)
        started = time.monotonic()
        try:
            result = entry.function(**arguments)
            if inspect.isawaitable(result):
                import asyncio

                result = asyncio.run(result)
        except Exception as exc:
            invocation.duration_ms = round((time.monotonic() - started) * 1000, 1)
            invocation.succeeded, invocation.error = False, f"{type(exc).__name__}: {exc}"
            log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%sms)", entry.name, invocation.id,
                      invocation.duration_ms, exc_info=True)
            raise
        invocation.duration_ms = round((time.monotonic() - started) * 1000, 1)
        invocation.succeeded = True
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%sms)", entry.name, invocation.id,
                 invocation.duration_ms)
        return result

    def invoke_queue(self, entry: FunctionEntry, message: Any) -> None:
        self.invoke(
            entry, {entry.trigger["name"]: message},
            reason=f"New queue message detected on '{entry.trigger['queueName']}'.",
            details={"messageId": message.id, "dequeueCount": message.dequeue_count,
                     "body": message.get_body().decode("utf-8", "replace")[:2000]},
        )

    def invoke_event_grid(self, entry: FunctionEntry, event: dict[str, Any]) -> None:
        # The worker's own converter: an EventGridSchema event becomes func.EventGridEvent and a
        # CloudEvents 1.0 event func.CloudEvent, exactly as in Azure.
        from azure.functions import meta
        from azure.functions.eventgrid import EventGridEventInConverter

        argument = EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})
        self.invoke(entry, {entry.trigger["name"]: argument}, reason="EventGrid trigger fired",
                    details={"eventId": event.get("id"), "eventType": event.get("eventType") or event.get("type")})

    def invoke_timer(self, entry: FunctionEntry, *, past_due: bool = False, reason: str = "Timer fired") -> None:
        from azure.functions.timer import TimerRequest

        self.invoke(entry, {entry.trigger["name"]: TimerRequest(past_due=past_due)}, reason=reason)

    def invoke_on_demand(self, entry: FunctionEntry, payload: str) -> None:
        """What ``POST /admin/functions/<name>`` runs, in the background as the host does."""
        from azure.functions.queue import QueueMessage

        def run() -> None:
            try:
                if entry.trigger_type == "timerTrigger":
                    self.invoke_timer(entry, reason="This function was programmatically called via the host APIs.")
                elif entry.trigger_type == "queueTrigger":
                    message = QueueMessage(id=str(uuid.uuid4()), body=payload.encode(), dequeue_count=1)
                    self.invoke_queue(entry, message)
                elif entry.trigger_type == "eventGridTrigger":
                    self.invoke_event_grid(entry, json.loads(payload or "{}"))
                else:
                    log.error("%s: on-demand runs of %s functions are not supported", entry.name, entry.trigger_type)
            except Exception:
                pass  # invoke() logged and recorded it

        threading.Thread(target=run, name=f"admin-{entry.name}", daemon=True).start()


def read_local_settings(path: Path) -> dict[str, str]:
    """The ``Values`` of a local.settings.json (Core Tools' format)."""
    values = json.loads(path.read_text()).get("Values", {})
    return {str(k): str(v) for k, v in values.items()}


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The SDKs log every HTTP request at INFO: the host's own lines are what matter here.
    for noisy in ("azure", "werkzeug", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.devhost", description=__doc__.split("\n")[0])
    parser.add_argument("--settings", type=Path, help="a local.settings.json whose Values become app settings")
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--port", type=int, default=0, help="HTTP port (0: a free one)")
    parser.add_argument("--function-key", help="the key callers must present (default: random)")
    parser.add_argument("--queue-option", action="append", default=[], metavar="NAME=VALUE",
                        help="override a host.json extensions.queues setting (time spans in seconds)")
    parser.add_argument("--no-timers", action="store_true", help="do not fire timers on schedule (admin API still can)")
    args = parser.parse_args(argv)
    configure_logging()
    settings = read_local_settings(args.settings) if args.settings else {}
    host = DevHost(app_settings=settings, app_ref=args.app, port=args.port, function_key=args.function_key,
                   queue_overrides=parse_overrides(args.queue_option), timers=not args.no_timers)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    host.start()
    print(json.dumps({"devhost": "ready", "url": host.url, "functionKey": host.function_key,
                      "identityKey": host.issuer.key,
                      "functions": sorted(host.functions)}), flush=True)
    while not stopping.wait(0.5):
        pass
    log.info("dev host stopping")
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
