"""The step queue over Azure Queue storage (azure-storage-queue): sends step messages.

Messages are base64 text, as host.json's ``messageEncoding: base64`` makes the Functions host
expect; a plain-text message would fail to decode and land in poison. A delay is the message's
initial visibility timeout. Messages never expire: a step waiting days for an operator's
decision must not vanish with the queue's default seven-day time to live.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from upgrade.adapters.storage import managed_identity_or_refuse, storage_error
from upgrade.domain.steps import StepMessage
from upgrade.storage_names import POISON_QUEUE, STEP_QUEUE

if TYPE_CHECKING:
    from upgrade.settings import Settings

MAX_VISIBILITY_SECONDS = 7 * 24 * 3600  # the service's limit on a message's initial invisibility
NEVER_EXPIRE = -1


def base64_policies() -> dict:
    """Client options that encode and decode message text as base64, as the Functions host does."""
    return {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}


class AzureStepQueue:
    """StepQueue over two queue clients: the step queue and its poison queue."""

    def __init__(self, steps: QueueClient, poison: QueueClient) -> None:
        self._steps = steps
        self._poison = poison

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureStepQueue:
        """Connection string when one is set (local, Azurite), else the managed identity."""
        clients = [queue_client(settings, name) for name in (STEP_QUEUE, POISON_QUEUE)]
        for client in clients:
            ensure_queue(client)
        return cls(*clients)

    def send(self, message: StepMessage, *, delay_seconds: float = 0.0) -> None:
        # Visibility is whole seconds: round up so a step never runs before its delay.
        visibility = min(MAX_VISIBILITY_SECONDS, max(0, math.ceil(delay_seconds)))
        try:
            self._steps.send_message(
                message.to_json(), visibility_timeout=visibility or None, time_to_live=NEVER_EXPIRE
            )
        except AzureError as exc:
            raise storage_error(f"send {message.step} of run {message.run_id}", exc) from exc

    def send_to_poison(self, body: str) -> None:
        try:
            self._poison.send_message(body, time_to_live=NEVER_EXPIRE)
        except AzureError as exc:
            raise storage_error("send to the poison queue", exc) from exc


def queue_client(settings: Settings, queue_name: str) -> QueueClient:
    if settings.storage_connection:
        return QueueClient.from_connection_string(settings.storage_connection, queue_name, **base64_policies())
    credential = managed_identity_or_refuse(settings, settings.storage_queue_uri, "queueServiceUri")
    return QueueClient(settings.storage_queue_uri, queue_name, credential=credential, **base64_policies())


def ensure_queue(client: QueueClient) -> None:
    """Create the queue if it is missing (infra creates it in Azure; Azurite starts empty)."""
    try:
        client.create_queue()
    except ResourceExistsError:
        pass
    except AzureError as exc:
        raise storage_error(f"create queue {client.queue_name}", exc) from exc
