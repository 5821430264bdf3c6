"""Emulated AKS time for the emulator.

AKS durations (drain timeouts, node soak, pod grace periods) are minutes long; tests and demos
cannot wait that long. `ScaledClock` maps emulated AKS minutes to a configurable number of real
seconds, so a 30-minute drain timeout can elapse in about a second while every timestamp the
emulator serves stays a plausible UTC time.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

AKS_SECONDS_PER_MINUTE = 60.0


class ScaledClock:
    """Emulated AKS time. time_scale = real seconds per emulated AKS minute (60.0 = real time;
    0.05 makes a 30-minute drain timeout elapse in 1.5 s)."""

    def __init__(self, time_scale: float = 60.0) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0 real seconds per AKS minute, got {time_scale}")
        self.time_scale = time_scale
        self._started_real = time.monotonic()
        self._started_emulated = datetime.now(UTC).replace(microsecond=0)
        # Tests jump emulated time forward deterministically instead of sleeping.
        self._skipped = timedelta()
        self._lock = threading.Lock()

    @property
    def speedup(self) -> float:
        """How many emulated seconds pass per real second."""
        return AKS_SECONDS_PER_MINUTE / self.time_scale

    def now(self) -> datetime:
        """Emulated UTC time; advances `speedup` times faster than real time."""
        real_elapsed = time.monotonic() - self._started_real
        with self._lock:
            skipped = self._skipped
        return self._started_emulated + timedelta(seconds=real_elapsed * self.speedup) + skipped

    def real_seconds(self, aks_seconds: float) -> float:
        """How long to really wait for an emulated duration."""
        return aks_seconds / self.speedup

    def sleep(self, aks_seconds: float) -> None:
        """Block for the real time an emulated duration takes."""
        if aks_seconds > 0:
            time.sleep(self.real_seconds(aks_seconds))

    def advance(self, aks_seconds: float) -> None:
        """Move emulated time forward at once (tests: expire grace periods without waiting)."""
        if aks_seconds < 0:
            raise ValueError("emulated time only moves forward")
        with self._lock:
            self._skipped += timedelta(seconds=aks_seconds)
