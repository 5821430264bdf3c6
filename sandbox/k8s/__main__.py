"""``python -m sandbox.k8s up [--pool NAME=COUNT[:System]] ...``: a real control plane on loopback.
(``python -m sandbox.k8s openapi`` refreshes the emulator's OpenAPI documents from it.)

Starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (``make k8s`` builds
them), registers AKS-like kwok nodes, prints ONE JSON line (API server URL, the admin's and the
app identity's kubeconfigs, the nodes), runs until SIGTERM/SIGINT and stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from sandbox.k8s.controlplane import ControlPlane, ControlPlaneError, Pool

DEFAULT_POOLS = ["system=1:System", "nodepool1=2"]


def parse_pool(text: str) -> Pool:
    """``NAME=COUNT`` or ``NAME=COUNT:System``."""
    name, _, rest = text.partition("=")
    count, _, mode = rest.partition(":")
    if not name or not count.isdigit() or mode not in ("", "System", "User"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=COUNT or NAME=COUNT:System")
    return Pool(name, int(count), mode=mode or "User")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.k8s", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "openapi"])
    parser.add_argument("--pool", type=parse_pool, action="append",
                        help=f"an agent pool of kwok nodes (default: {' '.join(DEFAULT_POOLS)})")
    args = parser.parse_args(argv)
    if args.command == "openapi":
        from sandbox.k8s.openapi_capture import main as capture

        return capture()
    pools = args.pool or [parse_pool(p) for p in DEFAULT_POOLS]
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        with ControlPlane(pools=pools) as control_plane:
            print(json.dumps(control_plane.endpoints()), flush=True)
            while not stopping.wait(0.5):
                pass
            print("control plane stopping", file=sys.stderr, flush=True)
    except ControlPlaneError as error:
        print(f"sandbox.k8s: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
