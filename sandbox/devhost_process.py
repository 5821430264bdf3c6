"""Runs the dev host in its own Python process, as Core Tools runs the worker.

A separate process gets its own environment (the app settings) and its own import of
function_app and caches, so each test session or sandbox gets a clean host. Its output is
kept (``logs``) and can be forwarded line by line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.request import Request, urlopen

from sandbox.devhost_config import REPO_ROOT
from sandbox.easy_auth import ADMIN, Identity, SandboxIssuer
from sandbox.serving import stop_process_group


class DevHostError(RuntimeError):
    pass


class DevHostProcess:
    """``with DevHostProcess(app_settings={...}) as host: host.url, host.function_key, host.logs``."""

    def __init__(
        self,
        *,
        app_settings: Mapping[str, str],
        queue_overrides: Mapping[str, object] | None = None,
        timers: bool = True,
        function_key: str | None = None,
        on_log_line: Callable[[str], None] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.app_settings = dict(app_settings)
        self.queue_overrides = dict(queue_overrides or {})
        self.timers = timers
        self.requested_key = function_key
        self.on_log_line = on_log_line
        self.startup_timeout = startup_timeout
        self.url = ""
        self.function_key = ""
        self.issuer: SandboxIssuer | None = None
        self.functions: list[str] = []
        self._logs: list[str] = []
        self._logs_changed = threading.Condition()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> DevHostProcess:
        args = [sys.executable, "-m", "sandbox.devhost", "--port", "0"]
        if self.requested_key:
            args += ["--function-key", self.requested_key]
        for name, value in self.queue_overrides.items():
            args += ["--queue-option", f"{name}={value}"]
        if not self.timers:
            args.append("--no-timers")
        env = {**os.environ, **self.app_settings, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), name="devhost-output", daemon=True)
        self._reader.start()
        if not ready.wait(self.startup_timeout) or not self.url:
            self.stop()
            raise DevHostError("the dev host did not start:\n" + "\n".join(self._logs[-60:]))
        return self

    def _read(self, ready: threading.Event) -> None:
        assert self._process is not None and self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.rstrip("\n")
            if line.startswith('{"devhost": "ready"'):
                info = json.loads(line)
                self.url, self.function_key, self.functions = info["url"], info["functionKey"], info["functions"]
                self.issuer = SandboxIssuer(info["identityKey"])
                ready.set()
                continue
            with self._logs_changed:
                self._logs.append(line)
                self._logs_changed.notify_all()
            if self.on_log_line is not None:
                self.on_log_line(line)
        ready.set()

    @property
    def logs(self) -> list[str]:
        with self._logs_changed:
            return list(self._logs)

    def wait_for_log(self, pattern: str, *, timeout: float = 30.0) -> str:
        """The first log line matching the regex ``pattern``; raises TimeoutError with the tail."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._logs_changed:
            while True:
                for line in self._logs:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = "\n".join(self._logs[-40:])
                    raise TimeoutError(f"no log line matched {pattern!r} in {timeout}s; last lines:\n{tail}")
                self._logs_changed.wait(remaining)

    def token(self, identity: Identity = ADMIN) -> str:
        """A bearer token from the host's sandbox issuer (see sandbox.easy_auth) for ``identity``."""
        assert self.issuer is not None, "the host is not started"
        return self.issuer.mint(identity)

    def request(self, method: str, path: str, *, body: Any = None, headers: Mapping[str, str] | None = None,
                with_key: bool = True, identity: Identity | None = ADMIN) -> tuple[int, Any]:
        """Call the host as ``identity`` (a bearer token; None: no token); returns (status, parsed
        JSON or text). ``with_key`` adds the function key (the webhook and admin API need it)."""
        from urllib.error import HTTPError

        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if identity is not None:
            all_headers["Authorization"] = f"Bearer {self.token(identity)}"
        if with_key:
            all_headers["x-functions-key"] = self.function_key
        try:
            with urlopen(Request(self.url + path, data=data, method=method, headers=all_headers), timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode("utf-8", "replace")

    def invocations(self, function: str | None = None) -> list[dict[str, Any]]:
        status, records = self.request("GET", "/admin/host/invocations")
        if status != 200:
            raise DevHostError(f"invocations: HTTP {status}")
        return [r for r in records if function is None or r["function"] == function]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        stop_process_group(process, grace_seconds=20)
        if self._reader is not None:
            self._reader.join(timeout=5)

    def __enter__(self) -> DevHostProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
