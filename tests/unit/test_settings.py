"""Settings are validated once, with errors that name the setting at fault."""

from pathlib import Path

import pytest

from upgrade.errors import InvalidInput
from upgrade.settings import SETTINGS, load_settings

CLUSTER = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1"
ROOT = Path(__file__).resolve().parents[2]


def test_minimal_settings_load_with_defaults():
    settings = load_settings({"ALLOWED_CLUSTERS": CLUSTER})
    assert settings.allowed_clusters == frozenset({CLUSTER})
    assert settings.quarantine_scan_schedule == "0 */5 * * * *"
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.is_allowed(CLUSTER.upper())
    assert not settings.is_allowed(CLUSTER.replace("c1", "c2"))


@pytest.mark.parametrize(
    ("environ", "field", "problem"),
    [
        ({}, "ALLOWED_CLUSTERS", "is required"),
        ({"ALLOWED_CLUSTERS": "/subscriptions/s/resourceGroups/rg"}, "ALLOWED_CLUSTERS", "not an AKS"),
        ({"ALLOWED_CLUSTERS": "[1, 2]"}, "ALLOWED_CLUSTERS", "list of ARM id strings"),
        ({"ALLOWED_CLUSTERS": "[oops"}, "ALLOWED_CLUSTERS", "not valid JSON"),
        ({"ALLOWED_CLUSTERS": CLUSTER, "UPGRADE_POLICY": "{"}, "UPGRADE_POLICY", "not valid JSON"),
        ({"ALLOWED_CLUSTERS": CLUSTER, "CLUSTER_KUBECONFIGS": "[]"}, "CLUSTER_KUBECONFIGS", "JSON object"),
        ({"ALLOWED_CLUSTERS": CLUSTER, "ARM_ENDPOINT": "http://arm.example.com"}, "ARM_ENDPOINT", "loopback"),
        ({"ALLOWED_CLUSTERS": CLUSTER, "ARM_DEV_TOKEN": "t"}, "ARM_DEV_TOKEN", "loopback"),
    ],
)
def test_bad_settings_name_the_setting(environ, field, problem):
    with pytest.raises(InvalidInput) as caught:
        load_settings(environ)
    assert caught.value.field == field
    assert problem in str(caught.value)


def test_loopback_http_arm_with_dev_token_is_accepted():
    settings = load_settings(
        {"ALLOWED_CLUSTERS": f"[\"{CLUSTER}\"]", "ARM_ENDPOINT": "http://127.0.0.1:8443/", "ARM_DEV_TOKEN": "t"}
    )
    assert settings.arm_endpoint == "http://127.0.0.1:8443"
    assert settings.arm_dev_token == "t"


def test_readme_settings_table_names_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in SETTINGS if f"| `{s.name}` |" not in readme]
    assert missing == []
