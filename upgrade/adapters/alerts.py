"""Alert sinks: CloudEvents to an Event Grid custom topic, and one structured log line per alert.

Every alert is logged as one JSON line (logger ``upgrade.alerts``) whatever the sink, so an
operator without the topic still sees it in Application Insights. Publishing is retried a few
times, then logged as an error: an alert-sink failure never fails the caller (a scan, a step).
``publish`` returns whether the alert was delivered, so dedup state is kept only for alerts that
reached the operator.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from upgrade.domain.alerts import Alert
from upgrade.settings import Settings, is_loopback_url

log = logging.getLogger("upgrade.alerts")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}
EVENT_SOURCE = "/aks-upgrade-functions"


def alert_log_record(alert: Alert) -> dict[str, Any]:
    """The structured form of an alert: the CloudEvent's type plus its data."""
    return {"type": alert.event_type, "id": alert.event_id, "dedupKey": alert.dedup_key, **alert.to_event_data()}


def log_alert(alert: Alert) -> None:
    log.log(
        _LEVELS.get(alert.severity, logging.WARNING),
        json.dumps(alert_log_record(alert), sort_keys=True, default=str),
        extra={"alert_kind": alert.kind, "severity": alert.severity, "cluster": alert.cluster},
    )


class LogAlertSink:
    """No topic configured: the structured log line is the alert."""

    def publish(self, alert: Alert) -> bool:
        log_alert(alert)
        return True


def alert_to_cloud_event(alert: Alert) -> Any:
    from azure.core.messaging import CloudEvent

    parts = [f"pools/{alert.pool}" if alert.pool else "", f"nodes/{alert.node}" if alert.node else ""]
    subject = "/".join(part for part in parts if part)
    return CloudEvent(
        source=alert.cluster if alert.cluster.startswith("/") else EVENT_SOURCE,
        type=alert.event_type,
        data=alert.to_event_data(),
        subject=subject or None,
        id=alert.event_id,
        extensions={"severity": alert.severity},
    )


class EventGridAlertSink:
    """Publishes each alert as a CloudEvent through azure-eventgrid's EventGridPublisherClient."""

    def __init__(
        self,
        endpoint: str,
        credential: Any,
        *,
        attempts: int = 3,
        retry_delay_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from azure.eventgrid import EventGridPublisherClient

        self.endpoint = endpoint
        self.attempts = max(1, attempts)
        self.retry_delay_seconds = retry_delay_seconds
        self._sleep = sleep
        self._client = EventGridPublisherClient(endpoint, credential)
        # Our own loop retries with a bounded budget; the SDK's default policy could wait minutes.
        self._send_options: dict[str, Any] = {"retry_total": 0}
        if hasattr(credential, "get_token") and is_loopback_url(endpoint):
            # The sandbox's receiver speaks plain http on loopback; bearer auth refuses that by default.
            self._send_options["enforce_https"] = False

    def publish(self, alert: Alert) -> bool:
        log_alert(alert)
        event = alert_to_cloud_event(alert)
        for attempt in range(1, self.attempts + 1):
            try:
                self._client.send(event, **self._send_options)
                return True
            except Exception as exc:  # any failure to deliver: retried, then logged, never raised
                if attempt == self.attempts:
                    log.error(
                        "alert %s for %s not delivered to %s after %d attempts: %s",
                        alert.kind, alert.node or alert.pool or alert.cluster, self.endpoint, attempt, exc,
                    )
                    break
                log.warning("alert %s delivery attempt %d failed: %s; retrying", alert.kind, attempt, exc)
                self._sleep(self.retry_delay_seconds * attempt)
        return False


def alert_sink_from_settings(settings: Settings) -> LogAlertSink | EventGridAlertSink:
    """The topic when ALERTS_TOPIC_ENDPOINT is set (its key, else the app's managed identity); the log
    otherwise."""
    endpoint = settings.alerts_topic_endpoint
    if not endpoint:
        return LogAlertSink()
    if settings.alerts_topic_key:
        from azure.core.credentials import AzureKeyCredential

        credential: Any = AzureKeyCredential(settings.alerts_topic_key)
    else:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=os.environ.get("AZURE_CLIENT_ID") or None)
    return EventGridAlertSink(endpoint, credential)
