"""Adapters: the real implementations of the ports (upgrade.ports) over Azure and Kubernetes SDKs.

Each module is imported lazily by upgrade.wiring, so a cold start loads no SDK it does not use.
"""
