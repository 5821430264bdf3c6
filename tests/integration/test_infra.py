"""Offline validation of infra/: every Bicep file parses, checkov finds nothing, skips are
justified inline, and the infrastructure agrees with the code (app settings, function names,
queues, event types, ARM rights; the Kubernetes ClusterRole is checked against the adapter's real
requests in test_kube_rbac.py). No Azure access: checkov runs from the repo's
``.venv-checkov`` (one scan per test session) and the postdeploy hook runs against a fake ``az``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.infra_checks import (
    INFRA_DIR,
    REPO_ROOT,
    BicepParse,
    CheckovReport,
    bicep_files,
    parse_bicep,
    run_checkov,
    skip_comments,
    variable_value,
)
from upgrade.settings import SETTINGS

pytestmark = pytest.mark.integration

MAIN_BICEP = INFRA_DIR / "main.bicep"
SUBSCRIPTIONS_BICEP = INFRA_DIR / "subscriptions.bicep"
OPERATOR_ROLE_BICEP = INFRA_DIR / "modules" / "agentpool-operator-role.bicep"
POSTDEPLOY_HOOK = INFRA_DIR / "hooks" / "postdeploy.sh"
LOCAL_SETTINGS_EXAMPLE = REPO_ROOT / "local.settings.json.example"

# Set by infra but read by the Functions host, not by our code, so not in upgrade/settings.py:
# Application Insights has local auth disabled, so the host must send telemetry with the identity.
HOST_ONLY_SETTINGS = {"APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}

# In local.settings.json.example but read by the local Functions host (Core Tools), not by our
# code, so not in upgrade/settings.py: the worker language, which Flex Consumption takes from
# functionAppConfig in Azure instead, and worker indexing for the Python v2 programming model.
LOCAL_HOST_ONLY_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsFeatureFlags"}

AKS_UPGRADE_EVENT_TYPES = [
    "Microsoft.ContainerService.NewKubernetesVersionAvailable",
    "Microsoft.ContainerService.ClusterSupportEnding",
    "Microsoft.ContainerService.ClusterSupportEnded",
    "Microsoft.ContainerService.NodePoolRollingStarted",
    "Microsoft.ContainerService.NodePoolRollingSucceeded",
    "Microsoft.ContainerService.NodePoolRollingFailed",
]

@pytest.fixture(scope="module")
def bicep() -> BicepParse:
    return parse_bicep(bicep_files())


@pytest.fixture(scope="module")
def checkov() -> CheckovReport:
    report = run_checkov(INFRA_DIR, ("bicep", "kubernetes"))
    print(f"\ncheckov: {report.counts()}")
    return report


@pytest.fixture(scope="module")
def registered_functions():
    # function_app.py must import cleanly: the deployed host imports it the same way.
    from function_app import app

    return list(app.get_functions())


def _template(bicep: BicepParse, path: Path) -> dict:
    assert path not in bicep.errors, f"{path.name} does not parse: {bicep.errors[path]}"
    return bicep.templates[path]


# --- every file parses ----------------------------------------------------------------------


def test_infra_has_the_two_deployment_stages():
    # GIVEN the infra directory WHEN its Bicep files are listed THEN both stages are there
    names = {path.relative_to(INFRA_DIR).as_posix() for path in bicep_files()}
    assert {"main.bicep", "subscriptions.bicep"} <= names


@pytest.mark.parametrize("bicep_file", bicep_files(), ids=lambda p: p.relative_to(INFRA_DIR).as_posix())
def test_every_bicep_file_parses(bicep, bicep_file):
    # GIVEN a Bicep file WHEN checkov's parser reads it THEN it yields a template with content
    template = _template(bicep, bicep_file)
    assert template.get("resources") or template.get("modules"), f"{bicep_file.name} declares nothing"


def test_checkov_parses_and_scans_every_infra_file(checkov):
    # GIVEN the checkov scan of infra/ WHEN its parse results are read
    # THEN nothing failed to parse and both the Bicep and the Kubernetes files were scanned
    assert checkov.parsing_errors == []
    assert set(checkov.summaries) == {"bicep", "kubernetes"}
    assert all(summary["resource_count"] > 0 for summary in checkov.summaries.values())


# --- checkov policy -------------------------------------------------------------------------


def test_checkov_reports_no_failed_checks(checkov):
    # GIVEN the checkov scan WHEN failures are listed THEN there are none
    assert checkov.failed == [], "checkov failures:\n" + "\n".join(f.describe() for f in checkov.failed)
    assert checkov.passed, "checkov passed nothing: the scan did not run any check"


def test_every_checkov_skip_is_inline_on_its_resource_with_a_reason(checkov):
    # GIVEN the skip comments in infra/ and the skips checkov applied
    infra_files = [*bicep_files(), *INFRA_DIR.rglob("*.yaml")]
    comments = skip_comments(infra_files)
    # THEN every comment gives a reason
    without_reason = [f"{c.file.name}:{c.line} {c.check_id}" for c in comments if len(c.reason) < 20]
    assert without_reason == [], f"skips without a reason: {without_reason}"
    # AND every applied skip comes from a comment inside the skipped resource's lines
    for skip in checkov.skipped:
        assert any(
            c.check_id == skip.check_id
            and c.file.resolve() == skip.file.resolve()
            and skip.first_line <= c.line <= skip.last_line
            for c in comments
        ), f"skip without an inline comment on the resource: {skip.describe()}"
    # AND no comment is stale (skips a check that no longer applies there)
    applied = {(s.check_id, s.file.resolve()) for s in checkov.skipped}
    stale = [
        f"{c.file.name}:{c.line} {c.check_id}"
        for c in comments
        if (c.check_id, c.file.resolve()) not in applied
    ]
    assert stale == [], f"stale skip comments: {stale}"


# --- infra agrees with the code ---------------------------------------------------------------


def _bicep_app_settings(bicep: BicepParse) -> set[str]:
    return set(variable_value(_template(bicep, MAIN_BICEP), "appSettings"))


@pytest.mark.parametrize(
    ("direction", "extra_names"),
    [
        (
            "set by Bicep but not read by the code",
            lambda bicep, deployed: _bicep_app_settings(bicep) - deployed - HOST_ONLY_SETTINGS,
        ),
        (
            "read by the code when deployed but not set by Bicep",
            lambda bicep, deployed: (deployed | HOST_ONLY_SETTINGS) - _bicep_app_settings(bicep),
        ),
    ],
    ids=["no-unused-setting", "no-missing-setting"],
)
def test_app_settings_in_bicep_equal_the_deployed_settings(bicep, direction, extra_names):
    # GIVEN the settings module's deployed settings WHEN compared with main.bicep's app settings
    deployed = {spec.name for spec in SETTINGS if spec.deployed}
    # THEN no name is on one side only
    assert extra_names(bicep, deployed) == set(), direction


def test_host_only_settings_are_not_code_settings():
    # GIVEN the settings the host reads itself THEN the settings module does not list them too
    assert HOST_ONLY_SETTINGS.isdisjoint({spec.name for spec in SETTINGS})


def _local_settings_example_names() -> set[str]:
    if not LOCAL_SETTINGS_EXAMPLE.exists():
        pytest.fail(f"{LOCAL_SETTINGS_EXAMPLE.name} is missing at the repo root")
    return set(json.loads(LOCAL_SETTINGS_EXAMPLE.read_text(encoding="utf-8"))["Values"])


@pytest.mark.parametrize(
    ("direction", "extra_names"),
    [
        (
            "known to the settings module but missing from the example",
            lambda example, known: known - example,
        ),
        (
            "in the example but unknown to the settings module (and not a local host setting)",
            lambda example, known: example - known - LOCAL_HOST_ONLY_SETTINGS,
        ),
    ],
    ids=["no-missing-setting", "no-unknown-setting"],
)
def test_local_settings_example_names_exactly_the_settings(direction, extra_names):
    # GIVEN local.settings.json.example (written for local development) and the settings module
    example = _local_settings_example_names()
    known = {spec.name for spec in SETTINGS}
    # THEN no name is on one side only, apart from the settings the local host reads itself
    assert sorted(extra_names(example, known)) == [], f"{LOCAL_SETTINGS_EXAMPLE.name}: {direction}"


def test_local_host_only_settings_are_in_the_example_and_not_code_settings():
    # GIVEN the exceptions for settings the local Functions host reads itself
    # THEN each is still in the example (no stale exception) and none is a code setting too
    assert LOCAL_HOST_ONLY_SETTINGS - _local_settings_example_names() == set()
    assert LOCAL_HOST_ONLY_SETTINGS.isdisjoint({spec.name for spec in SETTINGS})


def test_event_subscriptions_deliver_to_the_event_grid_functions(bicep, registered_functions):
    # GIVEN the functions registered in function_app.app with an Event Grid trigger
    event_grid_functions = {
        fn.get_function_name()
        for fn in registered_functions
        if any(binding.type == "eventGridTrigger" for binding in fn.get_bindings())
    }
    # WHEN subscriptions.bicep names its destination function
    destination = variable_value(_template(bicep, SUBSCRIPTIONS_BICEP), "eventHandlerFunctionName")
    # THEN they are the same single function
    assert event_grid_functions == {destination}


def test_event_subscriptions_filter_the_six_aks_event_types(bicep):
    # GIVEN subscriptions.bicep THEN its filter lists exactly the six AKS upgrade events
    event_types = variable_value(_template(bicep, SUBSCRIPTIONS_BICEP), "aksUpgradeEventTypes")
    assert sorted(event_types) == sorted(AKS_UPGRADE_EVENT_TYPES)


def test_queues_in_bicep_are_the_queues_the_app_triggers_on(bicep, registered_functions):
    # GIVEN the queue names of the app's queue triggers
    triggered_queues = {
        binding.queue_name
        for fn in registered_functions
        for binding in fn.get_bindings()
        if binding.type == "queueTrigger"
    }
    # THEN main.bicep creates exactly those queues
    assert set(variable_value(_template(bicep, MAIN_BICEP), "stepQueueNames")) == triggered_queues


# --- least privilege ---------------------------------------------------------------------------


def test_agent_pool_operator_role_holds_only_named_aks_actions(bicep):
    # GIVEN the custom ARM role's actions
    actions = variable_value(_template(bicep, OPERATOR_ROLE_BICEP), "agentPoolOperatorActions")
    # THEN each is one named AKS managed-cluster action: no wildcard, nothing outside AKS
    assert actions
    assert [
        a for a in actions if "*" in a or not a.startswith("Microsoft.ContainerService/managedClusters/")
    ] == []
    assert len(actions) == len(set(actions))


# --- operator authentication ---------------------------------------------------------------------

FUNCTION_APP_BICEP = INFRA_DIR / "modules" / "function-app.bicep"
APP_ROLES_JSON = INFRA_DIR / "operator-app-roles.json"


def _auth_settings(bicep: BicepParse) -> dict:
    resources = _template(bicep, FUNCTION_APP_BICEP)["resources"].values()
    [auth] = [r["config"]["properties"] for r in resources
              if r["type"] == "Microsoft.Web/sites/config" and r["config"]["name"] == "authsettingsV2"]
    return auth


def _http_paths(registered_functions) -> list[str]:
    """Each HTTP route of the app as a concrete path (route parameters filled in)."""
    import re

    routes = [b.route for fn in registered_functions for b in fn.get_bindings() if b.type == "httpTrigger"]
    return ["/api/" + re.sub(r"\{[^}]+\}", "x", route) for route in routes]


def test_app_service_authentication_requires_entra_id_for_every_operator_route(bicep, registered_functions):
    # GIVEN the Function App's authsettingsV2
    auth = _auth_settings(bicep)
    validation = auth["globalValidation"]
    aad = auth["identityProviders"]["azureActiveDirectory"]
    # THEN authentication is on, required, answers 401 (an API, not a login redirect), with Entra ID
    assert auth["platform"]["enabled"] is True
    assert (validation["requireAuthentication"], validation["unauthenticatedClientAction"]) == (True, "Return401")
    assert aad["enabled"] is True and aad["registration"]["clientId"] == "operatorAppClientId"
    assert aad["validation"]["allowedAudiences"] == ["api://${operatorAppClientId}"]
    # AND no excluded path opens /api/upgrades* or /api/quarantine*, nor any route the app registers
    from sandbox.easy_auth import is_excluded

    excluded = validation["excludedPaths"]
    paths = ["/api/upgrades", "/api/upgrades/x", "/api/upgrades/x/approve", "/api/quarantine",
             "/api/quarantine/x/x/remediate", *_http_paths(registered_functions)]
    assert [p for p in paths if is_excluded(p, excluded)] == []
    # AND only the paths Azure calls with keys are excluded, the same the dev host's stand-in excludes
    assert is_excluded("/runtime/webhooks/EventGrid", excluded) and is_excluded("/admin/host/status", excluded)
    from sandbox.easy_auth import EXCLUDED_PATHS

    assert tuple(excluded) == EXCLUDED_PATHS


def test_the_app_registration_defines_exactly_the_roles_the_app_checks():
    from upgrade.domain.identity import ROLES

    roles = json.loads(APP_ROLES_JSON.read_text())
    assert sorted(r["value"] for r in roles) == sorted(ROLES)
    assert len({r["id"] for r in roles}) == len(roles) and all(r["isEnabled"] for r in roles)


# --- postdeploy hook (second stage) ------------------------------------------------------------

_FAKE_AZ = """#!/bin/sh
# Records each call; fails the deployment while a countdown file says so.
printf '%s\\n' "$*" >> "$FAKE_AZ_LOG"
for arg in "$@"; do
  case "$arg" in @*) cp "${arg#@}" "$FAKE_AZ_PARAMETERS" ;; esac
done
remaining=$(cat "$FAKE_AZ_FAILURES")
if [ "$remaining" -gt 0 ]; then
  echo $((remaining - 1)) > "$FAKE_AZ_FAILURES"
  echo "ERROR: Destination endpoint not found" >&2
  exit 1
fi
"""

CLUSTER_IDS = [
    "/subscriptions/0000/resourceGroups/rg-a/providers/Microsoft.ContainerService/managedClusters/aks-a",
    "/subscriptions/1111/resourceGroups/rg-b/providers/Microsoft.ContainerService/managedClusters/aks-b",
]


def _run_postdeploy(tmp_path: Path, failures: int, attempts: int) -> tuple[subprocess.CompletedProcess, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_az = bin_dir / "az"
    fake_az.write_text(_FAKE_AZ)
    fake_az.chmod(fake_az.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "failures").write_text(str(failures))
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AZ_LOG": str(tmp_path / "az.log"),
        "FAKE_AZ_PARAMETERS": str(tmp_path / "parameters.json"),
        "FAKE_AZ_FAILURES": str(tmp_path / "failures"),
        "AZURE_ENV_NAME": "dev",
        "AZURE_RESOURCE_GROUP": "rg-dev",
        "AZURE_FUNCTION_APP_ID": "/subscriptions/0000/resourceGroups/rg-dev/providers/Microsoft.Web/sites/func-x",
        "TARGET_CLUSTER_IDS": json.dumps(CLUSTER_IDS),
        "APP_IDENTITY_PRINCIPAL_ID": "11111111-2222-3333-4444-555555555555",
        "EVENT_SUBSCRIPTION_ATTEMPTS": str(attempts),
        "EVENT_SUBSCRIPTION_RETRY_SECONDS": "0",
        "APPLY_KUBERNETES_RBAC": "false",
    }
    completed = subprocess.run(
        ["sh", str(POSTDEPLOY_HOOK)], env=env, capture_output=True, text=True, check=False
    )
    return completed, tmp_path


@pytest.mark.parametrize(
    ("failures", "attempts", "expected_returncode", "expected_calls"),
    [
        (0, 3, 0, 1),  # the function is already indexed
        (2, 3, 0, 3),  # "Destination endpoint not found" twice, then created
        (3, 3, 1, 3),  # never found: the hook fails and says so
    ],
)
def test_postdeploy_hook_deploys_the_subscriptions_stage(
    tmp_path, failures, attempts, expected_returncode, expected_calls
):
    # GIVEN azd's environment values and an az that fails `failures` times
    # WHEN the postdeploy hook runs
    completed, workdir = _run_postdeploy(tmp_path, failures, attempts)
    # THEN it retries up to `attempts` deployments of subscriptions.bicep
    assert completed.returncode == expected_returncode, completed.stderr
    calls = (workdir / "az.log").read_text().splitlines()
    assert len(calls) == expected_calls
    assert all(f"--template-file {SUBSCRIPTIONS_BICEP}" in call for call in calls)
    assert all("--resource-group rg-dev" in call for call in calls)
    # AND the parameters it passes are valid JSON with the cluster ids as an array
    parameters = json.loads((workdir / "parameters.json").read_text())["parameters"]
    assert parameters["targetClusterIds"]["value"] == CLUSTER_IDS
    assert parameters["functionAppId"]["value"].endswith("/sites/func-x")


def test_postdeploy_hook_sets_the_console_sign_in_on_the_operator_app(tmp_path, monkeypatch):
    # GIVEN the operator app registration and the app's host name in azd's environment
    monkeypatch.setenv("OPERATOR_APP_CLIENT_ID", "99999999-0000-0000-0000-000000000000")
    monkeypatch.setenv("AZURE_FUNCTION_APP_HOSTNAME", "func-x.azurewebsites.net")
    # WHEN the postdeploy hook runs
    completed, workdir = _run_postdeploy(tmp_path, failures=0, attempts=1)
    # THEN the registration gets the App Service sign-in callback and ID tokens, before the subscriptions
    assert completed.returncode == 0, completed.stderr
    first, *rest = (workdir / "az.log").read_text().splitlines()
    assert first == ("ad app update --id 99999999-0000-0000-0000-000000000000 --web-redirect-uris "
                     "https://func-x.azurewebsites.net/.auth/login/aad/callback --enable-id-token-issuance true")
    assert len(rest) == 1 and f"--template-file {SUBSCRIPTIONS_BICEP}" in rest[0]


# --- preprovision hook: the policy from the azd environment ----------------------------------------

PREPROVISION_HOOK = INFRA_DIR / "hooks" / "preprovision.sh"
_FAKE_AZD = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_AZD_LOG"
"""

# Entra ID as the operator-app hook sees it: no app registration yet; creating one answers its id.
_FAKE_AZ_AD = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_AZ_LOG"
case "$*" in
  "ad app create"*) echo 0a0a0a0a-1111-4222-8333-444444444444 ;;
esac
"""
OPERATOR_APP_ID = "0a0a0a0a-1111-4222-8333-444444444444"


def _run_preprovision(tmp_path: Path, policy: str | None) -> tuple[subprocess.CompletedProcess, list[str]]:
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_azd = bin_dir / "azd"
    fake_azd.write_text(_FAKE_AZD)
    fake_azd.chmod(fake_azd.stat().st_mode | stat.S_IEXEC)
    fake_az = bin_dir / "az"
    fake_az.write_text(_FAKE_AZ_AD)
    fake_az.chmod(fake_az.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHON": sys.executable,
           "FAKE_AZD_LOG": str(tmp_path / "azd.log"), "FAKE_AZ_LOG": str(tmp_path / "az.log"),
           "TARGET_CLUSTER_IDS": json.dumps(CLUSTER_IDS), "AZURE_ENV_NAME": "dev"}
    env.pop("UPGRADE_POLICY_FILE", None)
    if policy is not None:
        (tmp_path / "policy.json").write_text(policy)
        env["UPGRADE_POLICY_FILE"] = str(tmp_path / "policy.json")
    completed = subprocess.run(["sh", str(PREPROVISION_HOOK)], env=env, cwd=REPO_ROOT, capture_output=True,
                               text=True, check=False)
    log = tmp_path / "azd.log"
    return completed, log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(("policy", "stored"), [
    (None, "{}"),
    (json.dumps({"defaults": {"remediation": {"relax-pdb": "approval-required"}},
                 "clusters": {CLUSTER_IDS[1]: {"strategy": "blue-green"}}}, indent=2),
     json.dumps({"defaults": {"remediation": {"relax-pdb": "approval-required"}},
                 "clusters": {CLUSTER_IDS[1]: {"strategy": "blue-green"}}}, separators=(",", ":"))),
])
def test_preprovision_stores_the_policy_file_in_the_azd_environment(tmp_path, policy, stored):
    # GIVEN UPGRADE_POLICY_FILE (or none) WHEN the hook runs before provisioning
    completed, azd_calls = _run_preprovision(tmp_path, policy)
    # THEN the policy is stored, compact, as the UPGRADE_POLICY main.parameters.json reads
    assert completed.returncode == 0, completed.stderr
    assert azd_calls == [f"env set UPGRADE_POLICY {stored}", f"env set OPERATOR_APP_CLIENT_ID {OPERATOR_APP_ID}"]
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text())["parameters"]
    assert parameters["upgradePolicy"]["value"] == "${UPGRADE_POLICY}"
    assert parameters["operatorAppClientId"]["value"] == "${OPERATOR_APP_CLIENT_ID}"


def test_preprovision_registers_the_operator_app_with_its_roles(tmp_path):
    # GIVEN no app registration yet WHEN the hook runs
    completed, _ = _run_preprovision(tmp_path, None)
    assert completed.returncode == 0, completed.stderr
    az_calls = (tmp_path / "az.log").read_text().splitlines()
    # THEN it looks for this environment's registration by its whole name (not a prefix: "dev" is not "dev2")
    assert az_calls[0] == "ad app list --filter displayName eq 'aks-upgrade-operators-dev' --query [0].appId --output tsv"
    # AND creates one, gives it the api:// identifier, v2 tokens and the roles file, and its service principal
    assert az_calls[1].startswith("ad app create --display-name aks-upgrade-operators-dev")
    assert az_calls[2] == (f"ad app update --id {OPERATOR_APP_ID} --identifier-uris api://{OPERATOR_APP_ID} "
                           f"--app-roles @{APP_ROLES_JSON} --set api.requestedAccessTokenVersion=2")
    assert az_calls[-1] == f"ad sp create --id {OPERATOR_APP_ID} --output none"


@pytest.mark.parametrize(("policy", "error"), [
    ('{"defaults": {"remediation": {"relax-pdb": "sometimes"}}}', "UPGRADE_POLICY.defaults.remediation.relax-pdb"),
    (json.dumps({"clusters": {CLUSTER_IDS[0].replace("aks-a", "aks-typo"): {}}}), "is not in ALLOWED_CLUSTERS"),
])
def test_preprovision_refuses_a_policy_the_app_would_refuse_before_deploying(tmp_path, policy, error):
    completed, azd_calls = _run_preprovision(tmp_path, policy)
    assert completed.returncode != 0 and azd_calls == []
    assert error in completed.stderr and completed.stderr.startswith("error: invalid setting: UPGRADE_POLICY")


def test_the_minimum_azd_version_is_the_documented_number():
    import re

    required = re.search(r'azd: ">= (\d+\.\d+\.\d+)"', (REPO_ROOT / "azure.yaml").read_text())
    assert required, "azure.yaml names no minimum azd version"
    assert f"azd {required.group(1)} or later" in (INFRA_DIR / "README.md").read_text()
