"""Names of the app's storage resources, shared by the triggers, the adapters, the sandbox and tests.

Plain constants with no imports, so the triggers can use them without slowing a cold start.
infra/main.bicep creates the same queues and tables (tests/integration/test_infra.py checks).
"""

STORAGE_CONNECTION = "AzureWebJobsStorage"  # the app setting (prefix) of the storage account
STEP_QUEUE = "upgrade-steps"
POISON_QUEUE = f"{STEP_QUEUE}-poison"  # the host's own naming: <queue>-poison
RUNS_TABLE = "runs"
HISTORY_TABLE = "runhistory"
STATE_TABLE = "alertstate"
