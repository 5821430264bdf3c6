"""Event Grid delivery of AKS system events to webhook subscribers.

A subscription is a webhook URL and a schema. Subscribing performs Event Grid's validation
handshake: for the Event Grid schema a POST with `aeg-event-type: SubscriptionValidation` that
must answer `{"validationResponse": <code>}`; for CloudEvents 1.0 the HTTP OPTIONS abuse-protection
handshake (`WebHook-Request-Origin`). Events are then POSTed with `aeg-event-type: Notification`,
one event per request in a JSON array (Event Grid's default batch size of one), with content type
`application/json` or `application/cloudevents-batch+json`.

Delivery runs on a background thread, so publishing never blocks an upgrade; failed deliveries are
retried with backoff. Event Grid is at-least-once and unordered, so a subscription can ask for
every event twice (`duplicate`) or for events held briefly and delivered newest first (`reorder`).
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field

from sandbox.aks_emulator.clock import ScaledClock

EVENT_TYPE_PREFIX = "Microsoft.ContainerService."
EVENT_GRID_SCHEMA = "EventGridSchema"
CLOUD_EVENT_SCHEMA = "CloudEventSchemaV1_0"
DELIVERY_TIMEOUT_SECONDS = 5.0
# Real seconds between delivery attempts; Event Grid's schedule is minutes long, tests need it short.
RETRY_DELAYS_SECONDS = (0.05, 0.2, 0.5, 1.0, 2.0)


class SubscriptionValidationFailed(Exception):
    """The webhook did not complete Event Grid's validation handshake."""


@dataclass
class Subscription:
    webhook_url: str
    schema: str = EVENT_GRID_SCHEMA
    duplicate: bool = False
    reorder: bool = False
    name: str = field(default_factory=lambda: f"emulator-{uuid.uuid4().hex[:8]}")
    delivered: int = 0
    failed: int = 0


@dataclass(order=True)
class _Delivery:
    due: float
    sequence: int
    subscription: Subscription = field(compare=False)
    event: dict = field(compare=False)
    attempt: int = field(default=1, compare=False)


def _post(url: str, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_SECONDS) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class EventGridPublisher:
    """Subscriptions and the background delivery of AKS events to them."""

    def __init__(self, clock: ScaledClock, *, reorder_window_seconds: float = 0.3) -> None:
        self.clock = clock
        self.reorder_window_seconds = reorder_window_seconds
        self.subscriptions: list[Subscription] = []
        self._queue: list[_Delivery] = []
        self._held: dict[str, list[dict]] = {}
        self._held_since: dict[str, float] = {}
        self._sequence = itertools.count()
        self._in_flight = 0
        self._condition = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._deliver_forever, name="eventgrid-delivery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(DELIVERY_TIMEOUT_SECONDS + 1)

    def subscribe(self, webhook_url: str, *, schema: str = EVENT_GRID_SCHEMA, duplicate: bool = False,
                  reorder: bool = False, validate: bool = True) -> Subscription:
        if schema not in (EVENT_GRID_SCHEMA, CLOUD_EVENT_SCHEMA):
            raise ValueError(f"schema must be {EVENT_GRID_SCHEMA} or {CLOUD_EVENT_SCHEMA}, not {schema!r}")
        subscription = Subscription(webhook_url, schema, duplicate, reorder)
        if validate:
            self._validate(subscription)
        with self._condition:
            self.subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._condition:
            self.subscriptions.remove(subscription)

    def _validate(self, subscription: Subscription) -> None:
        if subscription.schema == CLOUD_EVENT_SCHEMA:
            request = urllib.request.Request(subscription.webhook_url, method="OPTIONS",
                                             headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
            try:
                with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_SECONDS) as response:
                    if response.status // 100 == 2:
                        return
                    status = response.status
            except (urllib.error.URLError, OSError) as error:
                raise SubscriptionValidationFailed(f"{subscription.webhook_url}: {error}") from error
            raise SubscriptionValidationFailed(f"{subscription.webhook_url} answered OPTIONS with {status}")
        code = str(uuid.uuid4())
        event = {
            "id": str(uuid.uuid4()),
            "topic": "/subscriptions/emulator/resourceGroups/emulator/providers/Microsoft.EventGrid/topics/aks",
            "subject": "",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": self.clock.now().isoformat(),
            "data": {"validationCode": code, "validationUrl": None},
            "dataVersion": "2",
            "metadataVersion": "1",
        }
        request = urllib.request.Request(
            subscription.webhook_url, data=json.dumps([event]).encode(), method="POST",
            headers={"Content-Type": "application/json", "aeg-event-type": "SubscriptionValidation"},
        )
        try:
            with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_SECONDS) as response:
                answer = json.loads(response.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise SubscriptionValidationFailed(f"{subscription.webhook_url}: {error}") from error
        if answer.get("validationResponse") != code:
            raise SubscriptionValidationFailed(
                f"{subscription.webhook_url} answered {answer!r}, not the validation code")

    def publish(self, cluster_arm_id: str, cluster_name: str, event_type: str, data: dict) -> dict:
        """Queue one AKS event for every subscription; returns it in the Event Grid schema."""
        if not event_type.startswith(EVENT_TYPE_PREFIX):
            event_type = EVENT_TYPE_PREFIX + event_type
        return self.publish_event(cluster_arm_id, cluster_name, event_type, data)

    def publish_event(self, topic: str, subject: str, event_type: str, data: dict) -> dict:
        """Queue one event of any system topic (a Fleet gate's too) for every subscription."""
        event = {
            "id": str(uuid.uuid4()),
            "topic": topic,
            "subject": subject,
            "eventType": event_type,
            "eventTime": self.clock.now().isoformat().replace("+00:00", "Z"),
            "data": dict(data),
            "dataVersion": "1",
            "metadataVersion": "1",
        }
        with self._condition:
            for subscription in self.subscriptions:
                copies = 2 if subscription.duplicate else 1
                for _ in range(copies):
                    if subscription.reorder:
                        self._held.setdefault(subscription.name, []).append(event)
                        self._held_since.setdefault(subscription.name, time.monotonic())
                    else:
                        self._enqueue(subscription, event, time.monotonic())
            self._condition.notify_all()
        return event

    def wait_delivered(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is held, queued or in flight (tests)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._queue or self._held or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.05))
        return True

    def _enqueue(self, subscription: Subscription, event: dict, due: float, attempt: int = 1) -> None:
        heapq.heappush(self._queue, _Delivery(due, next(self._sequence), subscription, event, attempt))

    def _release_held(self, now: float) -> None:
        """Deliver held events of reordering subscriptions, newest first, once their window closes."""
        for subscription in list(self.subscriptions):
            since = self._held_since.get(subscription.name)
            if since is None or now - since < self.reorder_window_seconds:
                continue
            for event in reversed(self._held.pop(subscription.name)):
                self._enqueue(subscription, event, now)
            del self._held_since[subscription.name]

    def _deliver_forever(self) -> None:
        while True:
            with self._condition:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    self._release_held(now)
                    if self._queue and self._queue[0].due <= now:
                        delivery = heapq.heappop(self._queue)
                        self._in_flight += 1
                        break
                    waits = [self._queue[0].due - now] if self._queue else []
                    waits += [since + self.reorder_window_seconds - now for since in self._held_since.values()]
                    self._condition.wait(max(min(waits, default=0.5), 0.005))
            try:
                self._deliver(delivery)
            finally:
                with self._condition:
                    self._in_flight -= 1
                    self._condition.notify_all()

    def _deliver(self, delivery: _Delivery) -> None:
        subscription = delivery.subscription
        body, content_type = self._encode(subscription, delivery.event)
        headers = {
            "Content-Type": content_type,
            "aeg-event-type": "Notification",
            "aeg-subscription-name": subscription.name.upper(),
            "aeg-delivery-count": str(delivery.attempt - 1),
            "aeg-data-version": delivery.event["dataVersion"],
            "aeg-metadata-version": "1",
        }
        try:
            status = _post(subscription.webhook_url, body, headers)
        except (urllib.error.URLError, OSError):
            status = None
        if status is not None and status // 100 == 2:
            subscription.delivered += 1
            return
        if delivery.attempt > len(RETRY_DELAYS_SECONDS):
            subscription.failed += 1
            return
        with self._condition:
            self._enqueue(subscription, delivery.event, time.monotonic() + RETRY_DELAYS_SECONDS[delivery.attempt - 1],
                          delivery.attempt + 1)

    @staticmethod
    def _encode(subscription: Subscription, event: dict) -> tuple[bytes, str]:
        if subscription.schema == EVENT_GRID_SCHEMA:
            return json.dumps([event]).encode(), "application/json"
        cloud_event = {
            "specversion": "1.0",
            "id": event["id"],
            "source": event["topic"],
            "subject": event["subject"],
            "type": event["eventType"],
            "time": event["eventTime"],
            "datacontenttype": "application/json",
            "data": event["data"],
        }
        return json.dumps([cloud_event]).encode(), "application/cloudevents-batch+json; charset=utf-8"
