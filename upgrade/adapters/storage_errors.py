"""Translation of Azure Storage SDK errors into the project's errors, shared by queue and tables."""

from __future__ import annotations

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from upgrade.errors import Conflict, NotFound, PermanentError, TemporaryError, UpgradeError

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
