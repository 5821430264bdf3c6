"""``python -m sandbox up``: the whole local stand-in for Azure, wired to function_app.

Starts, in order: Azurite (in memory), the AKS emulator with one cluster per seed asked for (none:
no emulator), the alerts receiver (the alerts topic), and the Functions dev host with app settings
pointing at all of them (plus any extra settings, such as an UPGRADE_POLICY); subscribes the dev
host's Event Grid webhook to the emulated clusters' AKS events; prints ONE JSON line with every
endpoint; runs until SIGTERM/SIGINT; stops everything it started.

``--policy FILE|JSON`` sets the app's UPGRADE_POLICY (a file, or the JSON itself), validated as the
app validates it (``python -m upgrade policy check``), against the emulated clusters, before anything
starts serving: a bad policy is one ``error:`` line and exit 2.

``Sandbox`` is the same thing as a context manager, for the demo: one stage for every cluster.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sandbox.alerts_receiver import AlertsReceiver
from sandbox.app_settings import sandbox_app_settings
from sandbox.azurite import Azurite
from sandbox.devhost_process import DevHostProcess
from sandbox.easy_auth import IDENTITIES
from sandbox.lifecycle import Startable
from upgrade.errors import InvalidInput
from upgrade.settings import check_policy

if TYPE_CHECKING:
    from sandbox.aks_emulator.scenarios import ClusterBuilder


def scenario_names() -> list[str]:
    from sandbox.aks_emulator.scenarios import SCENARIOS

    return sorted(SCENARIOS)


class Sandbox(Startable):
    """Azurite + AKS emulator + alerts receiver + dev host. ``with Sandbox(seeds=["seed-rolling"]) as sb``.

    ``seeds`` are seed scenario names or ``ClusterBuilder``s (a builder with its own name gives a
    second cluster from the same seed); ``policy`` is the app's UPGRADE_POLICY (JSON text, or a file
    holding it); ``app_settings`` go over the sandbox's own, e.g. a scan schedule
    (``QUARANTINE_SCAN_SCHEDULE``). ``real_kubernetes``, given a cluster's name, returns the
    real API server backend (``sandbox.k8s.aks_backend.RealKube``) its nodes and workloads live on;
    without it every cluster is the emulator's model.
    """

    def __init__(self, *, seeds: Sequence[str | ClusterBuilder] = (), time_scale: float = 60.0,
                 queue_overrides: Mapping[str, object] | None = None, forward_host_logs: bool = True,
                 app_settings: Mapping[str, str] | None = None, policy: str | None = None,
                 real_kubernetes: Callable[[str], Any] | None = None) -> None:
        self.seeds = list(seeds)
        self.policy = policy_text(policy) if policy else None
        self.time_scale = time_scale
        self.queue_overrides = queue_overrides
        self.forward_host_logs = forward_host_logs
        self.extra_settings = dict(app_settings or {})
        self.real_kubernetes = real_kubernetes
        self.azurite: Azurite | None = None
        self.emulator: Any = None
        self.alerts: AlertsReceiver | None = None
        self.host: DevHostProcess | None = None
        self.workdir: Path | None = None
        self.clusters: dict[str, Any] = {}  # cluster name -> EmulatedCluster
        self.kubeconfigs: dict[str, str] = {}  # cluster ARM id -> kubeconfig path
        self.settings: dict[str, str] = {}
        self._stack = ExitStack()

    def _start(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="aks-upgrade-sandbox-"))
        self._stack.callback(shutil.rmtree, self.workdir, ignore_errors=True)
        self.azurite = self._stack.enter_context(Azurite())
        if self.seeds:
            from sandbox.aks_emulator.scenarios import SCENARIOS
            from sandbox.aks_emulator.server import Emulator

            self.emulator = Emulator(time_scale=self.time_scale)
            for seed in self.seeds:
                builder = SCENARIOS[seed]() if isinstance(seed, str) else seed
                backend = self.real_kubernetes(builder.name) if self.real_kubernetes else None
                if backend is not None:
                    self._stack.callback(backend.cleanup)
                cluster = builder.build(self.emulator, backend=backend,
                                        endpoint=backend.endpoint if backend is not None else None)
                self.clusters[cluster.name] = cluster
            self._stack.enter_context(self.emulator)
        self.alerts = self._stack.enter_context(AlertsReceiver())
        settings = sandbox_app_settings(
            storage_connection=self.azurite.connection_string, emulator=self.emulator,
            kubeconfig_dir=self.workdir, alerts_url=self.alerts.topic_endpoint, alerts_key=self.alerts.key,
        )
        self.kubeconfigs = json.loads(settings.get("CLUSTER_KUBECONFIGS", "{}"))
        if self.policy is not None:
            check_policy(self.policy, settings["ALLOWED_CLUSTERS"])  # the app's own checks, before it starts
            settings["UPGRADE_POLICY"] = self.policy
        self.settings = {**settings, **self.extra_settings}
        forward = (lambda line: print(line, file=sys.stderr, flush=True)) if self.forward_host_logs else None
        self.host = self._stack.enter_context(
            DevHostProcess(app_settings=self.settings, queue_overrides=self.queue_overrides, on_log_line=forward)
        )
        if self.emulator is not None:
            self.emulator.subscribe(self.event_grid_webhook)

    @property
    def event_grid_webhook(self) -> str:
        assert self.host is not None
        return (f"{self.host.url}/runtime/webhooks/EventGrid?functionName=on_aks_event"
                f"&code={quote(self.host.function_key)}")

    def kubeconfig(self, cluster_name: str) -> str:
        """The kubeconfig path of an emulated cluster, by the cluster's name."""
        return self.kubeconfigs[self.clusters[cluster_name].arm_id]

    def stop(self) -> None:
        self._stack.close()

    def endpoints(self) -> dict[str, Any]:
        """Everything a client needs, as printed by ``sandbox up``."""
        assert self.host is not None and self.azurite is not None and self.alerts is not None
        cluster_ids = list(self.kubeconfigs)
        return {
            "functionsUrl": self.host.url,
            "functionKey": self.host.function_key,
            # Bearer tokens from the dev host's stand-in for Entra ID, one per sandbox operator
            # (sandbox.easy_auth): e.g. AKS_UPGRADE_ACCESS_TOKEN for the CLI.
            "apiTokens": {role: self.host.token(identity) for role, identity in IDENTITIES.items()},
            "eventGridWebhook": self.event_grid_webhook,
            "kubeconfig": self.kubeconfigs[cluster_ids[0]] if cluster_ids else None,
            "kubeconfigs": self.kubeconfigs,
            "armUrl": self.emulator.arm_url if self.emulator is not None else None,
            "clusterIds": cluster_ids,
            "storageConnection": self.azurite.connection_string,
            "token": self.emulator.token if self.emulator is not None else None,
            "alertsUrl": self.alerts.alerts_url,
            "alertsTopicEndpoint": self.alerts.topic_endpoint,
        }


def policy_text(value: str) -> str:
    """``--policy FILE|JSON``: the JSON itself when it starts with ``{``, else the file's text."""
    if value.lstrip().startswith("{"):
        return value
    try:
        return Path(value).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput("command line", "--policy", f"cannot read {value!r}: {exc.strerror}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox up", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=scenario_names(), action="append", default=[],
                        help="seed the AKS emulator with this scenario; repeat for several clusters "
                             "(default: no emulator)")
    parser.add_argument("--time-scale", type=float, default=60.0,
                        help="real seconds per emulated AKS minute (60 = real time; 0.5 = fast)")
    parser.add_argument("--policy", metavar="FILE|JSON",
                        help="the app's UPGRADE_POLICY: a JSON file, or the JSON itself (docs/policy.md); "
                             "default: every remediation off")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        sandbox = Sandbox(seeds=args.scenario, time_scale=args.time_scale, policy=args.policy).start()
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        print(json.dumps(sandbox.endpoints()), flush=True)
        while not stopping.wait(0.5):
            pass
        print("sandbox stopping", file=sys.stderr, flush=True)
    finally:
        sandbox.stop()
    return 0
