"""Queue triggers on the dev host: poll a storage queue the way the Functions host does.

- Up to ``batchSize`` messages are processed at once; the next batch is fetched when the
  in-flight count drops to ``newBatchThreshold``.
- An empty queue backs polling off exponentially up to ``maxPollingInterval``.
- A message is invisible while it runs; on success it is deleted; on failure it becomes visible
  again after ``visibilityTimeout``; after ``maxDequeueCount`` failed deliveries it is copied to
  ``<queue>-poison`` and deleted.
- Bodies are decoded per ``messageEncoding``; a body that does not decode cannot ever succeed,
  so it goes straight to poison.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StoredMessage

from sandbox.devhost_config import QueueOptions

log = logging.getLogger("sandbox.devhost.queue")

MIN_POLLING_INTERVAL = 0.1
# How long a received message stays invisible while its function runs (the host renews its
# lease; functionTimeout bounds a run, so one long lease is equivalent here).
PROCESSING_LEASE_SECONDS = 600


class UndecodableMessage(ValueError):
    pass


def decode_queue_message(content: str, encoding: str) -> bytes:
    """The body the function sees for a stored message text, as the host decodes it."""
    if encoding == "none":
        return content.encode("utf-8")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UndecodableMessage(
            "Message decoding has failed: the text is not base64. Check host.json messageEncoding "
            "and the sender's encode policy."
        ) from exc


def ensure_queue(client: QueueClient) -> None:
    try:
        client.create_queue()
    except ResourceExistsError:
        pass


Invoke = Callable[[QueueMessage], None]


class QueueListener:
    """Polls one queue and runs ``invoke`` for each message; ``stop()`` waits for in-flight runs."""

    def __init__(self, *, function_name: str, connection: str, queue_name: str, options: QueueOptions,
                 invoke: Invoke) -> None:
        self.function_name = function_name
        self.queue_name = queue_name
        self.poison_queue_name = f"{queue_name}-poison"
        self.options = options
        self._invoke = invoke
        # No encode/decode policy: the listener sees and forwards the stored text as is.
        self._queue = QueueClient.from_connection_string(connection, queue_name)
        self._poison = QueueClient.from_connection_string(connection, self.poison_queue_name)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._in_flight = 0
        self._slots = threading.Condition()
        self._workers = ThreadPoolExecutor(max_workers=options.batchSize, thread_name_prefix=f"queue-{queue_name}")
        self._poller = threading.Thread(target=self._poll, name=f"poll-{queue_name}", daemon=True)

    def start(self) -> None:
        ensure_queue(self._queue)
        self._poller.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        with self._slots:
            self._slots.notify_all()
        if self._poller.is_alive():
            self._poller.join(timeout=10)
        self._workers.shutdown(wait=True)
        self._queue.close()
        self._poison.close()

    def _poll(self) -> None:
        interval = MIN_POLLING_INTERVAL
        while not self._stopping.is_set():
            with self._slots:
                while self._in_flight > self.options.newBatchThreshold and not self._stopping.is_set():
                    self._slots.wait()
                room = self.options.batchSize - self._in_flight
            if self._stopping.is_set():
                return
            try:
                batch = list(self._queue.receive_messages(
                    messages_per_page=room, max_messages=room, visibility_timeout=PROCESSING_LEASE_SECONDS
                ))
            except AzureError as exc:
                log.warning("polling %s failed: %s", self.queue_name, exc)
                batch = []
            if not batch:
                self._wake.wait(interval)
                self._wake.clear()
                interval = min(self.options.maxPollingInterval, max(MIN_POLLING_INTERVAL, interval * 2))
                continue
            interval = MIN_POLLING_INTERVAL
            for stored in batch:
                with self._slots:
                    self._in_flight += 1
                self._workers.submit(self._process, stored)

    def _process(self, stored: StoredMessage) -> None:
        try:
            self._process_one(stored)
        except Exception:
            log.exception("the dev host failed handling message %s on %s", stored.id, self.queue_name)
        finally:
            with self._slots:
                self._in_flight -= 1
                self._slots.notify_all()

    def _process_one(self, stored: StoredMessage) -> None:
        dequeue_count = stored.dequeue_count or 1
        if dequeue_count > self.options.maxDequeueCount:
            self._move_to_poison(stored, f"dequeue count {dequeue_count} is over maxDequeueCount")
            return
        try:
            body = decode_queue_message(stored.content, self.options.messageEncoding)
        except UndecodableMessage as exc:
            log.error("%s: message %s on %s: %s", self.function_name, stored.id, self.queue_name, exc)
            self._move_to_poison(stored, str(exc))
            return
        message = QueueMessage(
            id=stored.id, body=body, dequeue_count=dequeue_count, expiration_time=stored.expires_on,
            insertion_time=stored.inserted_on, time_next_visible=stored.next_visible_on,
            pop_receipt=stored.pop_receipt,
        )
        try:
            self._invoke(message)
        except Exception:
            # The invoker logged the failure; the queue's retry policy decides what happens next.
            if dequeue_count >= self.options.maxDequeueCount:
                self._move_to_poison(stored, f"failed {dequeue_count} times (maxDequeueCount)")
            else:
                self._release(stored)
            return
        self._delete(stored)

    def _release(self, stored: StoredMessage) -> None:
        try:
            self._queue.update_message(
                stored.id, stored.pop_receipt, visibility_timeout=int(self.options.visibilityTimeout)
            )
        except ResourceNotFoundError:
            log.warning("message %s vanished before it could be released", stored.id)

    def _delete(self, stored: StoredMessage) -> None:
        try:
            self._queue.delete_message(stored.id, stored.pop_receipt)
        except ResourceNotFoundError:
            log.warning("message %s was already deleted", stored.id)

    def _move_to_poison(self, stored: StoredMessage, reason: str) -> None:
        ensure_queue(self._poison)
        self._poison.send_message(stored.content, time_to_live=-1)
        self._delete(stored)
        log.error(
            "Message %s has reached MaxDequeueCount of %d or cannot be processed (%s): moved to '%s'",
            stored.id, self.options.maxDequeueCount, reason, self.poison_queue_name,
        )

    def describe(self) -> dict[str, Any]:
        return {"function": self.function_name, "queue": self.queue_name}
