"""Access to the app's storage account, shared by the queue and table adapters: which credential
to use, and how Azure Storage SDK errors translate into the project's errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from upgrade.errors import Conflict, InvalidInput, NotFound, PermanentError, TemporaryError, UpgradeError
from upgrade.storage_names import STORAGE_CONNECTION

if TYPE_CHECKING:
    from upgrade.settings import Settings

def managed_identity_or_refuse(settings: Settings, service_uri: str, uri_setting: str) -> Any:
    """The credential for identity-based access to ``service_uri`` (the app's user-assigned identity);
    refuses clearly when neither a connection string nor the endpoint is configured. Callers use
    the connection string themselves when one is set (local development, Azurite)."""
    if not service_uri:
        raise InvalidInput(
            "setting", STORAGE_CONNECTION,
            f"set a connection string, or {STORAGE_CONNECTION}__{uri_setting} for identity-based access",
        )
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=settings.storage_client_id or None)


# Storage throttles (503 ServerBusy, 429) and has transient 500s: worth retrying shortly.
RETRY_DELAY_SECONDS = 5.0


def storage_error(what: str, exc: Exception) -> UpgradeError:
    """The project error for a failed storage call on ``what`` (the caller raises it ``from exc``)."""
    if isinstance(exc, ResourceNotFoundError):
        return NotFound(f"{what}: not found", status=404)
    if isinstance(exc, (ResourceExistsError, ResourceModifiedError)):
        return Conflict(f"{what}: changed concurrently ({exc.reason or exc.status_code})", status=exc.status_code)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return TemporaryError(f"{what}: storage unreachable: {exc}", delay_seconds=RETRY_DELAY_SECONDS)
    if isinstance(exc, ClientAuthenticationError):
        return PermanentError(f"{what}: storage refused the credentials: {exc.message}", status=exc.status_code)
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if status == 429 or status >= 500:
            return TemporaryError(f"{what}: storage busy ({status})", delay_seconds=RETRY_DELAY_SECONDS, status=status)
        return PermanentError(f"{what}: storage error {status}: {exc.message}", status=status)
    return TemporaryError(f"{what}: {exc}", delay_seconds=RETRY_DELAY_SECONDS)
