"""Pure decisions: no I/O and no azure.* or kubernetes imports (an import-linter contract keeps it so)."""
