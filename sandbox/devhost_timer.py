"""Timer triggers on the dev host: fire a function on its NCRONTAB schedule.

NCRONTAB has six fields, seconds first (``0 */5 * * * *``); five-field expressions are
accepted too, as the host does. ``%NAME%`` is resolved from the app settings. Times are UTC,
the host's default. ``runOnStartup`` fires once at start.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from croniter import croniter

if TYPE_CHECKING:
    from sandbox.devhost import FunctionEntry

log = logging.getLogger("sandbox.devhost.timer")
_SETTING = re.compile(r"^%([^%]+)%$")


def resolve_schedule(schedule: str, settings: Mapping[str, str]) -> str:
    match = _SETTING.match(schedule.strip())
    if not match:
        return schedule
    value = settings.get(match[1], "").strip()
    if not value:
        raise ValueError(f"timer schedule {schedule} names app setting {match[1]}, which is not set")
    return value


def next_fire_time(expression: str, after: datetime) -> datetime:
    fields = expression.split()
    if len(fields) == 6:
        return croniter(expression, after, second_at_beginning=True).get_next(datetime)
    if len(fields) == 5:
        return croniter(expression, after).get_next(datetime)
    raise ValueError(f"not an NCRONTAB expression (six fields, seconds first): {expression!r}")


class TimerSchedule:
    """Fires ``fire(entry, past_due=..., reason=...)`` at each occurrence of the entry's schedule."""

    def __init__(self, entry: FunctionEntry, settings: Mapping[str, str],
                 fire: Callable[..., None]) -> None:
        self.entry = entry
        self.expression = resolve_schedule(entry.trigger["schedule"], settings)
        next_fire_time(self.expression, datetime.now(UTC))  # refuse a bad schedule at start, not later
        self._fire = fire
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"timer-{entry.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        if self.entry.trigger.get("runOnStartup"):
            self._safe_fire(past_due=False, reason="Timer fired at startup (runOnStartup)")
        due = next_fire_time(self.expression, datetime.now(UTC))
        while not self._stopping.wait(max(0.0, (due - datetime.now(UTC)).total_seconds())):
            late = (datetime.now(UTC) - due).total_seconds()
            self._safe_fire(past_due=late > 1.0, reason=f"Timer fired at {due.isoformat()}")
            due = next_fire_time(self.expression, datetime.now(UTC))

    def _safe_fire(self, *, past_due: bool, reason: str) -> None:
        try:
            self._fire(self.entry, past_due=past_due, reason=reason)
        except Exception:
            pass  # the host logged and recorded the failure; the next occurrence still fires
