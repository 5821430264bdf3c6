"""Kubernetes label selectors, as the API server evaluates them: the product's one implementation.

Two spellings reach the product and both become a ``LabelSelector``:

- the ``LabelSelector`` object of an API resource (a PDB's ``spec.selector``), in the API's JSON
  names: ``matchLabels`` and ``matchExpressions`` with the operators In, NotIn, Exists and
  DoesNotExist (``LabelSelector.from_api``);
- the string syntax of ``?labelSelector=`` and ``kubectl --selector``/``--pod-selector``:
  ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``, ``a>1``, ``a<1``
  (``LabelSelector.parse``).

Kubernetes' rules (apimachinery ``labels`` and ``metav1.LabelSelectorAsSelector``):

- every requirement must hold (matchLabels and matchExpressions are ANDed);
- NotIn and ``!=`` also match an object without the key; In and ``=`` need the key;
- an empty selector (``{}``, or no requirement) matches everything: a policy/v1 PDB with
  ``selector: {}`` covers every pod of its namespace;
- a null (absent) selector matches nothing: a PDB without ``selector`` covers no pod;
- In and NotIn need at least one value, Exists and DoesNotExist none; keys are qualified names
  and values label values (at most 63 characters).

Pure: no I/O. Adapters hand over the API's JSON names only; ``from_api`` refuses any other key
(a snake_case ``match_labels`` read as "no requirement" would match every pod).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from upgrade.errors import InvalidInput


class Operator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    GREATER_THAN = "Gt"  # only in the string syntax ("a>1")
    LESS_THAN = "Lt"


# The operators a LabelSelector object's matchExpressions may use.
EXPRESSION_OPERATORS = (Operator.IN, Operator.NOT_IN, Operator.EXISTS, Operator.DOES_NOT_EXIST)

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_INT64 = re.compile(r"^[+-]?[0-9]+$")


def _key_problem(key: str) -> str | None:
    """Why ``key`` is not a qualified name (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"key {key!r}: the prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not _NAME.match(name):
        return (f"key {key!r}: the name must be 63 characters or less, alphanumeric, '-', '_' or '.', "
                "starting and ending with an alphanumeric character")
    return None


def _value_problem(value: str) -> str | None:
    if len(value) > 63 or (value and not _NAME.match(value)):
        return (f"value {value!r}: must be empty or 63 characters or less, alphanumeric, '-', '_' or '.', "
                "starting and ending with an alphanumeric character")
    return None


@dataclass(frozen=True)
class Requirement:
    """One requirement on one label key."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def problem(self) -> str | None:
        """Why Kubernetes would reject this requirement, or None."""
        problem = _key_problem(self.key)
        if problem:
            return problem
        count = len(self.values)
        if self.operator in (Operator.IN, Operator.NOT_IN) and count == 0:
            return f"{self.key} {self.operator}: needs at least one value"
        if self.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and count:
            return f"{self.key} {self.operator}: takes no values"
        if self.operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
            if count != 1 or not _INT64.match(next(iter(self.values))):
                return f"{self.key} {self.operator}: needs exactly one integer value"
            return None
        return next(filter(None, (_value_problem(v) for v in sorted(self.values))), None)

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator is Operator.IN:
            return present and labels[self.key] in self.values
        if self.operator is Operator.NOT_IN:
            return not present or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return present
        if self.operator is Operator.DOES_NOT_EXIST:
            return not present
        if not present or not _INT64.match(labels[self.key]):
            return False
        (bound,) = self.values
        if self.operator is Operator.GREATER_THAN:
            return int(labels[self.key]) > int(bound)
        return int(labels[self.key]) < int(bound)

    def __str__(self) -> str:
        values = ",".join(sorted(self.values))
        return {
            Operator.IN: f"{self.key} in ({values})" if len(self.values) != 1 else f"{self.key}={values}",
            Operator.NOT_IN: f"{self.key} notin ({values})" if len(self.values) != 1 else f"{self.key}!={values}",
            Operator.EXISTS: self.key,
            Operator.DOES_NOT_EXIST: f"!{self.key}",
            Operator.GREATER_THAN: f"{self.key}>{values}",
            Operator.LESS_THAN: f"{self.key}<{values}",
        }[self.operator]


@dataclass(frozen=True)
class LabelSelector:
    """A set of requirements, all of which must hold; ``null`` = the absent selector (matches nothing)."""

    requirements: tuple[Requirement, ...] = ()
    null: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.null:
            return False
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        if self.null:
            return "<none>"
        return ",".join(str(r) for r in self.requirements) or "<everything>"

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def match_labels(cls, labels: Mapping[str, str]) -> LabelSelector:
        """The selector ``{matchLabels: labels}`` (each pair an In with one value)."""
        return cls.from_api({"matchLabels": dict(labels)})

    @classmethod
    def from_api(cls, raw: Mapping[str, Any] | None, *, what: str = "label selector",
                 field: str = "selector") -> LabelSelector:
        """A LabelSelector object in the API's JSON names; None (absent) is the null selector.
        Raises InvalidInput for what the API server would reject, or for any other key."""
        if raw is None:
            return NOTHING
        if not isinstance(raw, Mapping):
            raise InvalidInput(what, field, f"must be an object with matchLabels/matchExpressions, not {raw!r}")
        unknown = sorted(set(raw) - {"matchLabels", "matchExpressions"})
        if unknown:
            raise InvalidInput(what, field, f"unknown key {unknown[0]!r} (expected matchLabels, matchExpressions)")
        requirements: list[Requirement] = []
        match_labels = raw.get("matchLabels") or {}
        if not isinstance(match_labels, Mapping):
            raise InvalidInput(what, f"{field}.matchLabels", "must map label keys to values")
        for key, value in match_labels.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidInput(what, f"{field}.matchLabels", f"{key!r}: keys and values must be strings")
            requirements.append(Requirement(key, Operator.IN, frozenset({value})))
        expressions = raw.get("matchExpressions") or []
        if not isinstance(expressions, list):
            raise InvalidInput(what, f"{field}.matchExpressions", "must be a list")
        for index, expression in enumerate(expressions):
            where = f"{field}.matchExpressions[{index}]"
            if not isinstance(expression, Mapping):
                raise InvalidInput(what, where, "must be an object with key, operator, values")
            extra = sorted(set(expression) - {"key", "operator", "values"})
            if extra:
                raise InvalidInput(what, where, f"unknown key {extra[0]!r} (expected key, operator, values)")
            key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
            if operator not in {str(o) for o in EXPRESSION_OPERATORS}:
                raise InvalidInput(what, where, f"{operator!r} is not a valid label selector operator "
                                                f"(one of {', '.join(EXPRESSION_OPERATORS)})")
            if not isinstance(key, str) or not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise InvalidInput(what, where, "key must be a string and values a list of strings")
            requirements.append(Requirement(key, Operator(operator), frozenset(values)))
        return cls._checked(requirements, what, field)

    @classmethod
    def parse(cls, text: str, *, what: str = "label selector", field: str = "selector") -> LabelSelector:
        """The string syntax of ``?labelSelector=``; "" is the empty selector (everything).
        Raises InvalidInput naming ``field`` when Kubernetes would refuse it."""
        return cls._checked(_Parser(text, what, field).requirements(), what, field)

    @classmethod
    def _checked(cls, requirements: list[Requirement], what: str, field: str) -> LabelSelector:
        for requirement in requirements:
            problem = requirement.problem()
            if problem:
                raise InvalidInput(what, field, problem)
        return cls(tuple(sorted(requirements, key=lambda r: (r.key, r.operator, sorted(r.values)))))


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(null=True)


class _Parser:
    """A small reader of the string syntax: requirements separated by commas outside parentheses."""

    _TOKEN = re.compile(r"\s*(!=|==|=|>|<|!|\(|\)|,|[^\s!=<>(),]+)")

    def __init__(self, text: str, what: str, field: str) -> None:
        self.text, self.what, self.field = text, what, field
        self.tokens: list[str] = []
        position = 0
        while position < len(text):
            match = self._TOKEN.match(text, position)
            if match is None:  # only trailing whitespace is left
                break
            self.tokens.append(match.group(1))
            position = match.end()
        self.index = 0

    def _fail(self, problem: str) -> InvalidInput:
        return InvalidInput(self.what, self.field, f"cannot parse {self.text!r}: {problem}")

    def _peek(self) -> str | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _take(self) -> str | None:
        token = self._peek()
        self.index += 1
        return token

    @staticmethod
    def _identifier(token: str | None) -> bool:
        return token is not None and token not in {"!=", "==", "=", ">", "<", "!", "(", ")", ","}

    def requirements(self) -> list[Requirement]:
        found: list[Requirement] = []
        if not self.tokens:
            return found
        while True:
            found.append(self._requirement())
            token = self._take()
            if token is None:
                return found
            if token != ",":
                raise self._fail(f"expected ',' but found {token!r}")

    def _requirement(self) -> Requirement:
        token = self._take()
        if token == "!":
            key = self._take()
            if not self._identifier(key):
                raise self._fail("'!' must be followed by a label key")
            if self._peek() not in (None, ","):
                raise self._fail(f"!{key} takes no operator")
            return Requirement(key, Operator.DOES_NOT_EXIST)
        if not self._identifier(token):
            raise self._fail(f"expected a label key but found {token or 'the end'!r}")
        key = token
        operator = self._peek()
        if operator in (None, ","):
            return Requirement(key, Operator.EXISTS)
        self._take()
        if operator in ("in", "notin"):
            return Requirement(key, Operator.IN if operator == "in" else Operator.NOT_IN, self._set())
        if operator in ("=", "==", "!="):
            value = self._take() if self._identifier(self._peek()) else ""  # "a=" is the empty value
            return Requirement(key, Operator.NOT_IN if operator == "!=" else Operator.IN, frozenset({value}))
        if operator in (">", "<"):
            value = self._take()
            if not self._identifier(value):
                raise self._fail(f"{key}{operator} needs an integer value")
            return Requirement(key, Operator.GREATER_THAN if operator == ">" else Operator.LESS_THAN,
                               frozenset({value}))
        raise self._fail(f"unknown operator {operator!r} after {key!r}")

    def _set(self) -> frozenset[str]:
        if self._take() != "(":
            raise self._fail("in/notin must be followed by '(values)'")
        values: list[str] = []
        expect_value = True
        while True:
            token = self._take()
            if token is None:
                raise self._fail("missing ')'")
            if token == ")":
                if values and expect_value:
                    values.append("")  # "a in (x,)": the trailing empty value
                return frozenset(values)
            if token == ",":
                if expect_value:
                    values.append("")
                expect_value = True
                continue
            if not self._identifier(token) or not expect_value:
                raise self._fail(f"unexpected {token!r} in a value list")
            values.append(token)
            expect_value = False
