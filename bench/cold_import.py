"""Cold-start cost of the app: ``import function_app`` against a bare ``import azure.functions``.

Each sample is a fresh interpreter (no module cache). Baseline and app samples alternate, so
a burst of machine load slows both sides alike instead of skewing the ratio; the medians and
their ratio are printed. Target: at most 1.3x, because adapters and SDKs are imported lazily, inside
the handlers. Also lists any heavy SDK that the app import pulled in (there should be none).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS = 9
TARGET_RATIO = 1.3
HEAVY_MODULES = ("azure.mgmt.containerservice", "kubernetes", "azure.identity", "pydantic",
                 "azure.data.tables", "azure.storage.queue", "azure.eventgrid")

_PROBE = """
import json, sys, time
started = time.perf_counter()
import {module}
elapsed = time.perf_counter() - started
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"seconds": elapsed, "heavy": heavy}}))
"""


def sample(module: str) -> dict:
    probe = _PROBE.format(module=module, heavy=HEAVY_MODULES)
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def interleaved_samples(runs: int) -> tuple[list[dict], list[dict]]:
    """`runs` samples of each import, alternating baseline and app (and which goes first)."""
    bare: list[dict] = []
    app: list[dict] = []
    for run in range(runs):
        pair = (("azure.functions", bare), ("function_app", app))
        for module, samples in pair if run % 2 == 0 else reversed(pair):
            samples.append(sample(module))
    return bare, app


def main() -> int:
    sample("function_app")  # warm the OS file cache and write bytecode, as a deployed app has it
    bare_samples, app_samples = interleaved_samples(RUNS)
    bare = statistics.median(s["seconds"] for s in bare_samples)
    app = statistics.median(s["seconds"] for s in app_samples)
    heavy = sorted({m for s in app_samples for m in s["heavy"]})
    ratio = app / bare
    print(f"import azure.functions : {bare * 1000:7.1f} ms (median of {RUNS} fresh interpreters, interleaved)")
    print(f"import function_app    : {app * 1000:7.1f} ms (median of {RUNS} fresh interpreters, interleaved)")
    print(f"ratio                  : {ratio:7.2f}x (target <= {TARGET_RATIO}x)")
    print(f"heavy SDKs imported    : {', '.join(heavy) if heavy else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
