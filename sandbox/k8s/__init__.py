"""A real Kubernetes control plane on loopback, as a test backend (see ``sandbox.k8s.controlplane``)."""
