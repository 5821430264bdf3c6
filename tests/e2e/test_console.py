"""The operator's console in a real browser: Debian's Chromium driven by Playwright, against
function_app on the dev host with Azurite and the AKS emulator.

- A blue-green run started from the CLI shows each of its steps in the console; the operator
  approves it there (confirming first) and the console shows it commit.
- Scenario 2's finding is shown with its node, pod, PDB and the ways out; the operator remediates
  it from the console and the node comes back.
- A Reader sees the same views and no action button.

Screenshots go to ``test-artifacts/console/`` (``CONSOLE_SCREENSHOTS`` names another folder:
``make screenshots`` writes the README's two into docs/).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.aks_emulator.scenarios import seed_bluegreen
from sandbox.devhost_config import REPO_ROOT
from sandbox.easy_auth import Identity
from tests.e2e.conftest import wait_until
from tests.e2e.test_bluegreen import FAST
from tests.e2e.test_quarantine import quarantined_scenario2
from tests.integration.conftest_emulator import FAST_TIME_SCALE
from upgrade.cli.common import ACCESS_TOKEN_ENV
from upgrade.cli.status import API_URL_ENV
from upgrade.domain.identity import APPROVE, OPERATE, READ

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS") or REPO_ROOT / "test-artifacts" / "console")
STARTED = re.compile(r"^started (\S+): blue -> ", re.MULTILINE)
OPERATOR = Identity("olivia operator", "00000000-0000-0000-0000-00000000000a", (READ, OPERATE, APPROVE))
READER = Identity("rita reader", "00000000-0000-0000-0000-00000000000b", (READ,))
UI_TIMEOUT_MS = 60_000
browser_log = logging.getLogger("browser")  # the page's console, in a failing test's report

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):  # CI installs it (.ci/run): never skipped there
    pytest.skip(f"the console's browser tests need Chromium at {CHROMIUM} (apt-get install -y chromium; "
                ".ci/run installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A factory of signed-in browser windows: ``browser(host, who)`` -> a Playwright page sending
    ``who``'s bearer token from the dev host's stand-in for Entra ID (App Service authentication
    turns it into the principal). Each caller gets its own fresh Chromium profile; every page is
    closed after the module."""
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    contexts = []
    with sync_playwright() as playwright:
        def open_page(host, who: Identity, width: int = 1280):
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS, viewport={"width": width, "height": 900},
                extra_http_headers={"Authorization": f"Bearer {host.token(who)}"})
            context.set_default_timeout(UI_TIMEOUT_MS)
            contexts.append(context)
            page = context.new_page()
            page.on("console", lambda message: browser_log.info("%s", message.text))
            page.on("pageerror", lambda error: browser_log.error("page error: %s", error))
            return page

        yield open_page
        for index, context in enumerate(contexts):  # the last thing each window showed, pass or fail
            for page in context.pages:
                page.screenshot(path=str(SCREENSHOTS / f"last-window-{index}.png"), full_page=True)
            context.close()


def console_url(host, view: str) -> str:
    return f"{host.url}/api/console?code={host.function_key}&poll=1{view}"


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def run_cli(host, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, API_URL_ENV: host.url, ACCESS_TOKEN_ENV: host.token(OPERATOR), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "upgrade", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def action_buttons(page) -> list[str]:
    return page.locator("section[aria-labelledby=actions-h] button").all_inner_texts()


@pytest.fixture(scope="module")
def bluegreen(start_devhost):
    from sandbox.aks_emulator.server import Emulator

    with Emulator(time_scale=FAST_TIME_SCALE) as emu:
        seed_bluegreen().build(emu)
        host = start_devhost(emulator=emu)
        try:
            yield host, emu.clusters()[0]
        finally:
            host.stop()


def test_a_blue_green_run_started_from_the_cli_is_watched_and_approved_in_the_console(bluegreen, browser):
    host, cluster = bluegreen
    # GIVEN a blue-green run started from the CLI that will wait for approval
    done = run_cli(host, "bluegreen", "start", "--cluster", cluster.arm_id, "--pool", "blue", "--target-version",
                   "1.31", "--batch-size", "1", "--options", json.dumps(FAST), "--approval",
                   "--approval-timeout-minutes", "30")
    assert done.returncode == 0, done.stderr
    run_id = STARTED.search(done.stdout).group(1)
    # WHEN the operator opens it in the console and watches until it asks for a decision
    page = browser(host, OPERATOR)
    page.goto(console_url(host, f"#/run/{run_id}"))
    seen: set[str] = set()

    def watch() -> bool:
        seen.update(page.locator("table.gantt tbody tr").evaluate_all("rows => rows.map(r => r.dataset.step)"))
        return page.locator("[data-testid=run-status]").inner_text() == "awaiting-decision"

    wait_until(watch, timeout=300, interval=0.2, what="the console to show the run awaiting a decision")
    page.wait_for_function("n => document.querySelectorAll('table.gantt tbody tr').length >= n",
                           arg=len(_api(host, f"/api/upgrades/{run_id}")["timeline"]))
    seen.update(page.locator("table.gantt tbody tr").evaluate_all("rows => rows.map(r => r.dataset.step)"))
    # THEN every step the run went through was on the console's timeline, with its actor
    steps = {row["step"] for row in _api(host, f"/api/upgrades/{run_id}")["timeline"]}
    assert steps <= seen, f"steps never shown: {steps - seen}"
    # AND the node grid shows the green pool's nodes green and the blue pool's cordoned (drained)
    green = page.locator("ul.grid li[data-state=green]")
    assert green.count() >= 2
    assert page.locator("ul.grid li[data-state=cordoned]").count() >= 1
    assert page.get_by_text("Decision due in").is_visible()
    shot(page, "console-run")
    # AND a Reader looking at the same run has no action button
    reader = browser(host, READER)
    reader.goto(console_url(host, f"#/run/{run_id}"))
    reader.get_by_text("allow no actions on a run").wait_for()
    assert action_buttons(reader) == []
    # WHEN the operator approves in the console, and confirms
    assert sorted(action_buttons(page)) == ["Abort", "Approve", "Pause", "Resume", "Rollback"]
    page.get_by_role("button", name="Approve").click()
    dialog = page.locator("dialog#confirm")
    assert "blue pool is deleted" in dialog.inner_text()
    dialog.get_by_role("button", name="Confirm").click()
    # THEN the console shows the run commit
    page.locator("[data-testid=run-status]", has_text="succeeded").wait_for(timeout=300_000)
    run = _api(host, f"/api/upgrades/{run_id}")
    assert run["status"] == "succeeded", run["reason"]
    assert any(row["actor"] == OPERATOR.actor for row in run["timeline"]), "the approval names the operator"
    shot(page, "console-run-committed")
    # AND the runs list finds it by cluster, pool and status, and not under another status
    page.goto(console_url(host, "#/runs"))
    page.get_by_label("Cluster").select_option(cluster.name)
    page.get_by_label("Pool").fill("blue")
    page.get_by_label("Pool").press("Enter")
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_role("link", name=run_id).wait_for()
    page.get_by_label("Status").select_option("failed")
    page.get_by_text("0 of 1 runs").wait_for()


def test_scenario_2s_finding_is_remediated_from_the_console_and_a_reader_has_no_buttons(
        emulator, start_devhost, aks_client, alerts_receiver, browser):
    # GIVEN Scenario 2 after its upgrade: node 1 quarantined by AKS with pod A under its PDB
    scenario2 = quarantined_scenario2(emulator, start_devhost, aks_client, alerts_receiver)
    [node1] = scenario2.quarantined()
    host = scenario2.host
    # WHEN a Reader opens the quarantine view
    reader = browser(host, READER, width=420)  # a narrow window
    reader.goto(console_url(host, "#/quarantine"))
    finding = reader.locator(f"article.finding[data-node='{node1}']")
    finding.wait_for()
    # THEN the finding names pod A, its PDB and budget, the four ways out with commands, and no button to act
    text = finding.inner_text()
    assert "app-a" in text and "app-a-pdb" in text and "minAvailable 1" in text
    assert finding.locator(".option").evaluate_all("els => els.map(e => e.dataset.kind)") == [
        "scale-out", "relax-pdb", "delete-pod", "replace-node"]
    assert finding.get_by_role("button", name=re.compile("^Request")).count() == 0
    assert "kubectl" in finding.locator("pre").first.inner_text()
    shot(reader, "console-finding-narrow")
    # WHEN the operator opens it and requests relax-pdb, and confirms
    page = browser(host, OPERATOR)
    page.goto(console_url(host, "#/quarantine"))
    finding = page.locator(f"article.finding[data-node='{node1}']")
    finding.wait_for()
    shot(page, "console-finding")
    finding.get_by_role("button", name="Request relax-pdb").click()
    page.locator("dialog#confirm").get_by_role("button", name="Confirm").click()
    # THEN the console follows the remediation run until it succeeds, and node 1 is no longer quarantined
    page.wait_for_url(re.compile(r"#/run/"))
    page.locator("[data-testid=run-status]", has_text="succeeded").wait_for(timeout=300_000)
    wait_until(lambda: scenario2.quarantined() == [], timeout=30, what="no quarantined node")
    page.goto(console_url(host, "#/quarantine"))
    page.get_by_text("No cordoned or quarantined node").wait_for()


def _api(host, path: str) -> dict:
    status, body = host.request("GET", path)
    assert status == 200, body
    return body


def test_a_rollout_blocked_at_its_gate_shows_stages_cards_and_the_verdict_and_is_aborted_in_the_console(
        emulator, start_devhost, browser):
    from sandbox.aks_emulator.scenarios import fleet
    from tests.e2e.rolling_support import policy_json
    from tests.e2e.test_rollouts import stages

    # GIVEN a 3-stage rollout of 4 clusters whose second cluster's upgrade quarantines a node
    emu = emulator(*fleet(4, pdb_blocked=[2]))
    ids = [c.arm_id for c in emu.clusters()]
    host = start_devhost(emulator=emu, UPGRADE_POLICY=policy_json())
    status, started = host.request("POST", "/api/rollouts", body={"name": "fleet", "stages": stages(ids, threshold=2)})
    assert status == 202, started
    # WHEN the operator opens it in the console and it stops at the staging gate
    page = browser(host, OPERATOR)
    page.goto(console_url(host, f"#/rollout/{started['id']}"))
    page.locator("[data-testid=rollout-status]", has_text="gate-blocked").wait_for(timeout=240_000)
    # THEN the stages are columns, the clusters cards, and the blocked gate's verdict names the node
    assert page.locator("ol.stages > li").evaluate_all("els => els.map(e => e.dataset.stage)") == [
        "dev", "staging", "prod"]
    assert page.locator("li.card").count() == 4
    assert page.locator("li.stage[data-stage=dev] .gate.passed").count() == 1
    verdict = page.locator("li.stage[data-stage=staging] .gate.blocked").inner_text()
    quarantined = [n["metadata"]["name"] for n in emu.clusters()[1].kube.nodes("nodepool1")
                   if n.get("spec", {}).get("unschedulable")]
    assert quarantined and all(node in verdict for node in quarantined)
    shot(page, "console-rollout")
    # AND a Reader sees it without any action button
    reader = browser(host, READER)
    reader.goto(console_url(host, f"#/rollout/{started['id']}"))
    reader.get_by_text("allow no actions on a rollout").wait_for()
    assert action_buttons(reader) == []
    # WHEN the operator aborts it in the console, and confirms
    page.get_by_role("button", name="Abort").click()
    page.locator("dialog#confirm").get_by_role("button", name="Confirm").click()
    # THEN the console shows it aborted
    page.locator("[data-testid=rollout-status]", has_text="aborted").wait_for()
    status, body = host.request("GET", f"/api/rollouts/{started['id']}")
    assert body["status"] == "aborted" and [d["decision"] for d in body["decisions"]] == ["abort"]
