"""Azurite launcher: the repo's pinned Azure Storage emulator, in memory, on free ports.

Used by the pytest session fixture, ``python -m sandbox up`` and the demo. Azurite picks its own
ports (``--*Port 0``) and prints them; we read them from its output, so no port is guessed and
raced for. The connection string names every endpoint explicitly (``UseDevelopmentStorage=true``
would mean the fixed default ports).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from sandbox.serving import stop_process_group

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public; it only opens the local emulator).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SERVICES = ("blob", "queue", "table")
STOP_GRACE_SECONDS = 2.0
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at (http://\S+)")


class AzuriteError(RuntimeError):
    pass


class Azurite:
    """One Azurite process. ``with Azurite() as storage: storage.connection_string``."""

    def __init__(self, *, host: str = "127.0.0.1", startup_timeout: float = 30.0) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self.endpoints: dict[str, str] = {}
        self._process: subprocess.Popen[str] | None = None
        self._output: deque[str] = deque(maxlen=200)  # the tail, for a useful error message
        self._reader: threading.Thread | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoints['blob']}/{ACCOUNT};"
            f"QueueEndpoint={self.endpoints['queue']}/{ACCOUNT};"
            f"TableEndpoint={self.endpoints['table']}/{ACCOUNT};"
        )

    def start(self) -> Azurite:
        if not AZURITE_BIN.exists():
            raise AzuriteError(f"{AZURITE_BIN} is missing: run `npm ci` (or `make venv`) first")
        args = [str(AZURITE_BIN), "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent"]
        for service in SERVICES:
            args += [f"--{service}Host", self.host, f"--{service}Port", "0"]
        # A new session: teardown signals Azurite's whole process group (npm shims spawn node).
        self._process = subprocess.Popen(
            args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read_output, args=(ready,), daemon=True, name="azurite-output")
        self._reader.start()
        if not ready.wait(self.startup_timeout) or len(self.endpoints) < len(SERVICES):
            self.stop()
            raise AzuriteError("Azurite did not start:\n" + "\n".join(self._output))
        return self

    def _read_output(self, ready: threading.Event) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._output.append(line.rstrip())
            match = _LISTENING.search(line)
            if match:
                self.endpoints[match[1].lower()] = match[2].rstrip("/")
                if len(self.endpoints) == len(SERVICES):
                    ready.set()
        ready.set()  # the process ended: wake the waiter, which sees the missing endpoints

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # Azurite waits for idle keep-alive connections to close; its data is in memory,
        # so after a short grace there is nothing left to lose.
        stop_process_group(process, grace_seconds=STOP_GRACE_SECONDS)
        if self._reader is not None:
            self._reader.join(timeout=5)

    def wait_until_serving(self, timeout: float = 10.0) -> None:
        """Ready-wait beyond the log line: the queue service answers a real request."""
        from azure.core.exceptions import AzureError
        from azure.storage.queue import QueueServiceClient

        deadline = time.monotonic() + timeout
        with QueueServiceClient.from_connection_string(self.connection_string) as client:
            while True:
                try:
                    client.get_service_properties()
                    return
                except AzureError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def __enter__(self) -> Azurite:
        self.start()
        self.wait_until_serving()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
