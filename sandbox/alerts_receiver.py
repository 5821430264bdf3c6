"""A local stand-in for the alerts Event Grid topic: receives what EventGridPublisherClient sends.

The SDK POSTs CloudEvents as a JSON batch (``application/cloudevents-batch+json``) to the topic
endpoint with the access key in the ``aeg-sas-key`` header (or a bearer token for Entra ID).
The receiver checks the key, keeps every event, and lists them at ``GET /alerts``
(``DELETE /alerts`` clears). In-process: ``with AlertsReceiver() as alerts: alerts.topic_endpoint``.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.serving import LoopbackServer

TOPIC_PATH = "/api/events"


class AlertsReceiver:
    def __init__(self, *, key: str | None = None, bind: str = "127.0.0.1", port: int = 0) -> None:
        self.key = key or secrets.token_urlsafe(24)
        self._received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._app, name="alerts-receiver", host=bind, port=port)
        self.url = self._server.url

    @property
    def topic_endpoint(self) -> str:
        """What ALERTS_TOPIC_ENDPOINT is set to (EventGridPublisherClient's endpoint)."""
        return self.url + TOPIC_PATH

    @property
    def alerts_url(self) -> str:
        return self.url + "/alerts"

    def start(self) -> AlertsReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> AlertsReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def _app(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        if request.path == TOPIC_PATH and request.method == "POST":
            response = self._receive(request)
        elif request.path == "/alerts" and request.method == "GET":
            response = Response(json.dumps(self.alerts()), mimetype="application/json")
        elif request.path == "/alerts" and request.method == "DELETE":
            self.clear()
            response = Response(status=204)
        else:
            response = Response(status=404)
        return response(environ, start_response)

    def _receive(self, request: Request) -> Response:
        given = request.headers.get("aeg-sas-key", "")
        if not hmac.compare_digest(given.encode(), self.key.encode()):
            return Response(json.dumps({"error": "missing or wrong aeg-sas-key"}), status=401,
                            mimetype="application/json")
        try:
            payload = json.loads(request.get_data() or b"null")
        except json.JSONDecodeError:
            return Response(status=400)
        events = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(e, dict) and e.get("specversion") and e.get("type") for e in events):
            return Response(json.dumps({"error": "expected CloudEvents 1.0"}), status=400,
                            mimetype="application/json")
        received_at = datetime.now(UTC).isoformat()
        with self._lock:
            self._received.extend({**e, "receivedAt": received_at} for e in events)
        return Response(status=200)
