"""Cold start as a user pays it: import of the app plus its first invocation of each trigger kind.

Each sample is a fresh interpreter that imports the app, indexes its functions and, except for
the import-only sample, invokes one function once: an HTTP GET of the run list, a queue step (a
quarantine scan of an emulated cluster), the quarantine timer, an AKS Event Grid event. The
baseline is a bare ``azure.functions`` app with the same four trigger kinds whose handlers only
read their input. The app runs as deployed: the files ``.funcignore`` keeps, compiled to bytecode
beforehand, over Azurite and the AKS emulator (a seed cluster). Samples alternate baseline and
app, so a burst of machine load slows both alike. Prints the medians per kind, the import ratio,
and last ``ratio=`` of the sums over the four first invocations (app / bare).

    python -m bench.cold_import [--runs 5]
"""

from __future__ import annotations

import argparse
import compileall
import fnmatch
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from sandbox.aks_emulator.scenarios import seed_pdb
from sandbox.aks_emulator.server import Emulator
from sandbox.app_settings import sandbox_app_settings
from sandbox.azurite import Azurite
from upgrade.domain.steps import StepMessage

REPO_ROOT = Path(__file__).resolve().parent.parent
KINDS = ("import", "http", "queue", "timer", "eventgrid")
HEAVY_MODULES = ("azure.mgmt.containerservice", "kubernetes", "azure.identity", "pydantic",
                 "azure.data.tables", "azure.storage.queue", "azure.eventgrid")
FUNCTIONS = {"http": "list_upgrades", "queue": "run_step", "timer": "scan_quarantine", "eventgrid": "on_aks_event"}

BARE_APP = '''
import json
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="upgrades", methods=["GET"])
def list_upgrades(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"runs": []}), mimetype="application/json")


@app.queue_trigger(arg_name="msg", queue_name="upgrade-steps", connection="AzureWebJobsStorage")
def run_step(msg: func.QueueMessage) -> None:
    json.loads(msg.get_body())


@app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *")
def scan_quarantine(timer: func.TimerRequest) -> None:
    timer.past_due


@app.event_grid_trigger(arg_name="event")
def on_aks_event(event: func.EventGridEvent) -> None:
    event.get_json()
'''

PROBE = """
import json, sys, time
started = time.perf_counter()
import {module} as module
functions = {{f.get_function_name(): f.get_user_function() for f in module.app.get_functions()}}
imported = time.perf_counter()
kind, inputs = {kind!r}, json.loads({inputs!r})
if kind == "http":
    import azure.functions as func
    functions[{names[http]!r}](func.HttpRequest("GET", "http://localhost/api/upgrades", headers={{}}, params={{}},
                                               route_params={{}}, body=b""))
elif kind == "queue":
    from azure.functions.queue import QueueMessage
    functions[{names[queue]!r}](QueueMessage(id="m1", body=inputs["queue"].encode(), dequeue_count=1))
elif kind == "timer":
    from azure.functions.timer import TimerRequest
    functions[{names[timer]!r}](TimerRequest(past_due=False))
elif kind == "eventgrid":
    from azure.functions import meta
    from azure.functions.eventgrid import EventGridEventInConverter
    event = EventGridEventInConverter.decode(meta.Datum(json.dumps(inputs["eventgrid"]), "json"), trigger_metadata={{}})
    functions[{names[eventgrid]!r}](event)
done = time.perf_counter()
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"import": imported - started, "total": done - started, "heavy": heavy}}))
"""


def deploy_tree(target: Path) -> None:
    """The files a deployment ships (git's files less .funcignore's patterns), with bytecode."""
    patterns = [p.strip().rstrip("/") for p in (REPO_ROOT / ".funcignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for name in files:
        parts = Path(name).parts
        if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(parts[0], p) for p in patterns):
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target / name)
    (target / "bare_app.py").write_text(BARE_APP)
    compileall.compile_dir(str(target), quiet=1)


def sample(folder: Path, module: str, kind: str, inputs: str, env: dict[str, str]) -> dict:
    probe = PROBE.format(module=module, kind=kind, inputs=inputs, names=FUNCTIONS, heavy=HEAVY_MODULES)
    result = subprocess.run([sys.executable, "-c", probe], cwd=folder, env=env, capture_output=True, text=True,
                            check=False, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"{module} {kind} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, Azurite() as storage, Emulator(time_scale=60.0) as emulator:
        folder = Path(scratch) / "app"
        deploy_tree(folder)
        cluster = seed_pdb().build(emulator)
        settings = sandbox_app_settings(storage_connection=storage.connection_string, emulator=emulator,
                                        kubeconfig_dir=Path(scratch))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | settings
        step = StepMessage(v=1, run_id="scan-cold-start", step="quarantine.scan", cluster=cluster.arm_id,
                           actor="bench")
        event = emulator.events.publish(cluster.arm_id, cluster.name, "NodePoolRollingSucceeded",
                                        {"nodePoolName": "nodepool1"})
        inputs = json.dumps({"queue": step.to_json(), "eventgrid": event})
        samples: dict[tuple[str, str], list[dict]] = {}
        for run in range(args.runs):
            for kind in KINDS:
                order = ("bare_app", "function_app") if run % 2 == 0 else ("function_app", "bare_app")
                for module in order:
                    samples.setdefault((module, kind), []).append(sample(folder, module, kind, inputs, env))
    median = {key: statistics.median(s["total"] for s in values) for key, values in samples.items()}
    print(f"fresh interpreters, medians of {args.runs}, bytecode compiled as deployed (.funcignore applied)")
    for kind in KINDS:
        bare, app = median[("bare_app", kind)], median[("function_app", kind)]
        what = "import + index" if kind == "import" else f"import + index + first {kind} invocation"
        heavy = sorted({m for s in samples[("function_app", kind)] for m in s["heavy"]})
        print(f"{what:45s}: bare {bare * 1000:7.1f} ms, app {app * 1000:7.1f} ms, x{app / bare:5.2f}; "
              f"SDKs loaded: {', '.join(heavy) or 'none'}")
    print(f"import_ratio={median[('function_app', 'import')] / median[('bare_app', 'import')]:.2f}")
    invoked = KINDS[1:]
    total_app = sum(median[("function_app", k)] for k in invoked)
    total_bare = sum(median[("bare_app", k)] for k in invoked)
    print(f"ratio={total_app / total_bare:.2f} (import and first invocation, summed over the four trigger kinds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
