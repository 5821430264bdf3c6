"""The start/stop shape shared by the sandbox's composite services (the whole sandbox, the real
control plane): ``start`` runs ``_start`` and, if any part of it fails, ``stop`` undoes what had
started before the error leaves; the object is its own context manager."""

from __future__ import annotations

from typing import Self


class Startable:
    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
