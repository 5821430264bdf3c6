"""Run the AKS emulator in the foreground with one seed scenario.

    python -m sandbox.aks_emulator --scenario seed-pdb --kubeconfig ./kubeconfig [--time-scale 1]

When ready it writes the kubeconfig and prints one JSON line: armUrl, kubeUrl, clusterId, token,
subscriptionId, resourceGroup, clusterName. SIGTERM or Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from sandbox.aks_emulator.scenarios import SCENARIOS
from sandbox.aks_emulator.server import Emulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.aks_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    parser.add_argument("--kubeconfig", required=True, help="where to write the cluster's kubeconfig")
    parser.add_argument("--time-scale", type=float, default=60.0,
                        help="real seconds per emulated AKS minute (60 = real time)")
    parser.add_argument("--token", help="bearer token both APIs accept (default: random)")
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--events-webhook", help="subscribe this webhook to the cluster's AKS events")
    parser.add_argument("--events-schema", default="EventGridSchema",
                        choices=["EventGridSchema", "CloudEventSchemaV1_0"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulator = Emulator(time_scale=args.time_scale, token=args.token, fault_seed=args.fault_seed)
    cluster = SCENARIOS[args.scenario]().build(emulator)
    emulator.start()
    try:
        if args.events_webhook:
            emulator.subscribe(args.events_webhook, schema=args.events_schema)
        emulator.write_kubeconfig(cluster.arm_id, args.kubeconfig)
        print(json.dumps({
            "armUrl": emulator.arm_url,
            "kubeUrl": cluster.kube_url,
            "clusterId": cluster.arm_id,
            "token": emulator.token,
            "subscriptionId": cluster.subscription_id,
            "resourceGroup": cluster.resource_group,
            "clusterName": cluster.name,
            "kubeconfig": args.kubeconfig,
        }), flush=True)
        # A timed wait lets the main thread run the signal handlers promptly.
        while not stop.wait(0.2):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
