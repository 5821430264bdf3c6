"""The production step registry holds the app's workflow steps only; test steps come from the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys

from sandbox.devhost_config import REPO_ROOT

PRODUCTION_REGISTRY = """
import json
import function_app  # what the Functions host imports
from upgrade.services.registry import step_registry
print(json.dumps({name: spec.handler.__module__ for name, spec in step_registry().items()}))
"""


def test_the_production_registry_holds_only_the_apps_own_steps():
    # GIVEN a fresh interpreter that imports the app as the Functions host does
    done = subprocess.run([sys.executable, "-c", PRODUCTION_REGISTRY], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)
    # THEN there is no ping (nor its crash switch), and every handler lives in the app's services
    assert "ping" not in steps
    assert steps and all(module.startswith("upgrade.services.") for module in steps.values()), steps
    from upgrade.services import bluegreen, quarantine_scan, remediation, rolling, rollouts

    own = {name for module in (bluegreen, rolling, quarantine_scan, remediation, rollouts) for name in module.STEPS}
    assert set(steps) == own


def test_the_sandbox_adds_ping_to_its_own_process_only():
    done = subprocess.run([sys.executable, "-c", "import json; from sandbox import ping_step; ping_step.register();"
                           "from upgrade.services.registry import step_registry; print(json.dumps(sorted(step_registry())))"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "ping" in json.loads(done.stdout)
