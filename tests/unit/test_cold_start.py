"""Cold start: importing the app must not pull in the heavy SDKs.

On a Consumption plan every cold start pays for what `import function_app` loads. The triggers
import services, adapters and SDKs inside their handlers, so indexing the app stays close to a
bare `import azure.functions`. The probe runs in a fresh interpreter: this test process has long
since imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LAZY_MODULES = ("azure.mgmt.containerservice", "kubernetes", "azure.identity", "pydantic")

_PROBE = """
import json, sys
import function_app
function_app.app.get_functions()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("azure", "kubernetes", "pydantic"))))
"""


@pytest.fixture(scope="module")
def modules_after_import() -> set[str]:
    result = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_probe_sees_what_the_app_does_import(modules_after_import):
    # GIVEN a fresh interpreter WHEN function_app is imported and indexed THEN azure.functions is loaded
    # (so an empty answer cannot pass the test below by accident)
    assert "azure.functions" in modules_after_import


@pytest.mark.parametrize("module", LAZY_MODULES)
def test_importing_the_app_leaves_heavy_sdks_unloaded(modules_after_import, module):
    # GIVEN a fresh interpreter WHEN function_app is imported and its functions indexed
    # THEN neither the SDK nor any of its submodules is in sys.modules
    loaded = sorted(m for m in modules_after_import if m == module or m.startswith(f"{module}."))
    assert loaded == []
