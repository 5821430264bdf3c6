"""A local AKS: an ARM API for managed clusters and agent pools and a Kubernetes API per cluster,
served on loopback, that upgrades node pools the way AKS does. Start it with `server.Emulator`
(in-process) or `python -m sandbox.aks_emulator` (standalone)."""
