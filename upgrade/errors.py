"""The project's error types: what went wrong, and whether trying again can help.

Adapters translate SDK and HTTP errors into these (``raise ... from exc``) so services and
the step executor decide on retry versus stop without knowing any SDK.
"""

from __future__ import annotations


class UpgradeError(Exception):
    """Base of every error this project raises on purpose."""


class InvalidInput(UpgradeError, ValueError):
    """Bad input from outside (an event, a step message, an HTTP body, a setting).

    ``field`` names the offending field so the message an operator sees says where to look.
    """

    def __init__(self, what: str, field: str, problem: str) -> None:
        self.what = what
        self.field = field
        self.problem = problem
        super().__init__(f"invalid {what}: {field}: {problem}")


class PermanentError(UpgradeError):
    """Retrying cannot help: stop, record and alert. ``status`` keeps an HTTP status if any."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class NotFound(PermanentError):
    """The object named does not exist (any more)."""


class Conflict(PermanentError):
    """A concurrent change won: an ETag mismatch, an active run, an operation in progress."""


class NotAllowed(PermanentError):
    """A safety rail refused the action (allow-list, last system pool, a pool the run did not create)."""


class NotSignedIn(PermanentError):
    """No caller identity the app can trust (HTTP 401): no validated principal, or the platform's
    authentication that would vouch for one is off."""


class TemporaryError(UpgradeError):
    """Try again later; ``delay_seconds`` is the earliest sensible retry."""

    def __init__(
        self,
        message: str,
        *,
        delay_seconds: float = 5.0,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.delay_seconds = delay_seconds
        self.status = status
        self.code = code
        super().__init__(message)
