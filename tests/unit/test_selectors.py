"""Label selectors as Kubernetes evaluates them: the examples of the Kubernetes documentation
("Labels and Selectors", and the PodDisruptionBudget spec's selector field), in both spellings."""

from __future__ import annotations

import pytest

from upgrade.domain.model import Pdb, Pod
from upgrade.domain.pdb import pdbs_for_pod, selected_pods
from upgrade.domain.selectors import EVERYTHING, NOTHING, LabelSelector, Operator, Requirement
from upgrade.errors import InvalidInput

PRODUCTION_FRONTEND = {"environment": "production", "tier": "frontend"}
PRODUCTION_BACKEND = {"environment": "production", "tier": "backend", "partition": "customerA"}
QA_CACHE = {"environment": "qa", "tier": "cache"}
DEV = {"environment": "dev"}
UNLABELLED: dict[str, str] = {}
OBJECTS = {
    "production-frontend": PRODUCTION_FRONTEND,
    "production-backend": PRODUCTION_BACKEND,
    "qa-cache": QA_CACHE,
    "dev": DEV,
    "unlabelled": UNLABELLED,
}


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        # Equality-based: "environment = production" selects the objects labelled so.
        ("environment = production", {"production-frontend", "production-backend"}),
        ("environment==production", {"production-frontend", "production-backend"}),
        # "tier != frontend" selects every other tier and the objects without a tier label.
        ("tier != frontend", {"production-backend", "qa-cache", "dev", "unlabelled"}),
        # The comma is an AND: production but not frontend.
        ("environment=production,tier!=frontend", {"production-backend"}),
        # Set-based: "environment in (production, qa)".
        ("environment in (production, qa)", {"production-frontend", "production-backend", "qa-cache"}),
        # "tier notin (frontend, backend)": other tiers and the objects without a tier label.
        ("tier notin (frontend, backend)", {"qa-cache", "dev", "unlabelled"}),
        # "partition": every object with the key, whatever its value; "!partition": those without it.
        ("partition", {"production-backend"}),
        ("!partition", {"production-frontend", "qa-cache", "dev", "unlabelled"}),
        # Mixed: "partition,environment notin (qa)".
        ("partition,environment notin (qa)", {"production-backend"}),
        # "environment in (production)" is the same as "environment=production".
        ("environment in (production),tier in (frontend)", {"production-frontend"}),
        # No requirement at all: everything.
        ("", set(OBJECTS)),
        ("  ", set(OBJECTS)),
    ],
)
def test_string_selectors_follow_the_labels_documentation(selector, selected):
    parsed = LabelSelector.parse(selector)
    assert {name for name, labels in OBJECTS.items() if parsed.matches(labels)} == selected


@pytest.mark.parametrize(
    ("raw", "selected"),
    [
        # The documentation's example: component=redis, tier In (cache), environment NotIn (dev).
        ({"matchLabels": {"component": "redis"},
          "matchExpressions": [{"key": "tier", "operator": "In", "values": ["cache"]},
                               {"key": "environment", "operator": "NotIn", "values": ["dev"]}]},
         {"redis-qa"}),
        # A matchLabels pair is an In with one value.
        ({"matchExpressions": [{"key": "component", "operator": "In", "values": ["redis"]}]},
         {"redis-qa", "redis-dev"}),
        ({"matchExpressions": [{"key": "environment", "operator": "NotIn", "values": ["dev"]}]},
         {"redis-qa", "web", "bare"}),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"redis-qa", "redis-dev", "web"}),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"bare"}),
        # policy/v1: an empty selector selects every pod of the namespace.
        ({}, {"redis-qa", "redis-dev", "web", "bare"}),
        ({"matchLabels": {}, "matchExpressions": []}, {"redis-qa", "redis-dev", "web", "bare"}),
        # A null selector selects no pod.
        (None, set()),
    ],
)
def test_selector_objects_follow_the_documentation(raw, selected):
    objects = {
        "redis-qa": {"component": "redis", "tier": "cache", "environment": "qa"},
        "redis-dev": {"component": "redis", "tier": "cache", "environment": "dev"},
        "web": {"component": "web", "tier": "frontend"},
        "bare": {},
    }
    selector = LabelSelector.from_api(raw)
    assert {name for name, labels in objects.items() if selector.matches(labels)} == selected


def test_match_labels_and_the_equivalent_string_are_one_selector():
    assert LabelSelector.match_labels({"app": "web", "tier": "db"}) == LabelSelector.parse("tier=db,app=web")
    assert LabelSelector.from_api({}) == EVERYTHING
    assert LabelSelector.from_api(None) == NOTHING
    assert EVERYTHING.matches({}) and not NOTHING.matches({})


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("replicas>2", {"replicas": "3"}, True),
        ("replicas>2", {"replicas": "2"}, False),
        ("replicas<2", {"replicas": "1"}, True),
        ("replicas<2", {"replicas": "x"}, False),  # not an integer: no match
        ("replicas<2", {}, False),  # Gt/Lt need the key
        ("app=", {"app": ""}, True),  # the empty value
        ("app=", {"app": "web"}, False),
        ("tier in (a,)", {"tier": ""}, True),  # a trailing comma adds the empty value
    ],
)
def test_string_syntax_edge_cases(selector, labels, matches):
    assert LabelSelector.parse(selector).matches(labels) is matches


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ("app in", "must be followed by '(values)'"),
        ("app in ()", "needs at least one value"),
        ("!app=web", "takes no operator"),
        ("a=(b", "expected ','"),
        ("app in (a", "missing ')'"),
        ("=web", "expected a label key"),
        ("app=web,", "expected a label key"),
        ("replicas>x", "exactly one integer value"),
        ("-bad=1", "name must be"),
        ("Bad_Prefix/app=1", "prefix must be a DNS subdomain"),
        ("app=" + "v" * 64, "63 characters"),
    ],
)
def test_selectors_kubernetes_refuses_are_refused(selector, problem):
    with pytest.raises(InvalidInput, match="pod_selector") as caught:
        LabelSelector.parse(selector, field="pod_selector")
    assert problem in caught.value.problem


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        # The kubernetes client's model names are not the API's: never read them as "no requirement".
        ({"match_labels": {"app": "web"}}, "unknown key 'match_labels'"),
        ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, "not a valid label selector operator"),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "needs at least one value"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, "takes no values"),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}, "values a list of strings"),
        ({"matchLabels": ["app"]}, "must map label keys to values"),
        ("app=web", "must be an object"),
    ],
)
def test_selector_objects_kubernetes_refuses_are_refused(raw, problem):
    with pytest.raises(InvalidInput) as caught:
        LabelSelector.from_api(raw)
    assert problem in caught.value.problem


def test_requirements_are_kept_in_one_order_and_printed_as_kubectl_reads_them():
    selector = LabelSelector.from_api({"matchLabels": {"b": "1"},
                                       "matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["y", "x"]}]})
    assert selector.requirements == (Requirement("a", Operator.NOT_IN, frozenset({"x", "y"})),
                                     Requirement("b", Operator.IN, frozenset({"1"})))
    assert str(selector) == "a notin (x,y),b=1"
    assert LabelSelector.parse(str(selector)) == selector


# ---- the selector in PDB matching --------------------------------------------------------------


def _pod(name: str, namespace: str = "apps", **labels: str) -> Pod:
    return Pod(namespace, name, f"uid-{name}", "node-1", labels=tuple(sorted(labels.items())))


def _pdb(name: str, selector: LabelSelector, namespace: str = "apps") -> Pdb:
    return Pdb(namespace, name, selector, min_available="1")


PODS = [
    _pod("web-1", app="web", tier="front"),
    _pod("web-2", app="web", tier="front", canary="true"),
    _pod("db-1", app="db", tier="back"),
    _pod("job-1"),
    _pod("web-other", namespace="other", app="web"),
]


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        (LabelSelector.match_labels({"app": "web"}), ["web-1", "web-2"]),
        (LabelSelector.from_api({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]}),
         ["web-1", "web-2", "db-1"]),
        (LabelSelector.from_api({"matchLabels": {"app": "web"},
                                 "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}), ["web-1"]),
        (LabelSelector.from_api({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}),
         ["db-1", "job-1"]),
        (LabelSelector.from_api({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
         ["web-1", "web-2", "db-1"]),
        (EVERYTHING, ["web-1", "web-2", "db-1", "job-1"]),  # {}: the whole namespace, no other
        (NOTHING, []),
    ],
)
def test_a_pdb_selects_the_pods_its_selector_matches_in_its_namespace(selector, selected):
    pdb = _pdb("budget", selector)
    # The indexed selection and the per-pod test agree.
    assert [p.name for p in selected_pods([pdb], PODS)[pdb.key]] == selected
    assert [p.name for p in PODS if pdbs_for_pod(p, [pdb])] == selected


@pytest.mark.parametrize(
    ("spec", "selector"),
    [
        ({"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}},
         LabelSelector.match_labels({"app": "web"})),
        ({"selector": {}}, EVERYTHING),
        ({}, NOTHING),
        ({"selector": None}, NOTHING),
        # Never stored by an API server (it validates): covers no pod, as the eviction API treats it.
        ({"selector": {"matchExpressions": [{"key": "app", "operator": "Sometimes"}]}}, NOTHING),
    ],
)
def test_the_kube_adapter_reads_the_api_json_selector(spec, selector):
    from upgrade.adapters.kube import pdb_from_json

    raw = {"metadata": {"namespace": "apps", "name": "web"}, "spec": {"minAvailable": 1, **spec}}
    assert pdb_from_json(raw).selector == selector
