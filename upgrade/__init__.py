"""AKS node-upgrade automation: Azure Functions that run upgrades as idempotent queue steps."""
