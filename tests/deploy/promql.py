"""Which series the service exports, and whether a PromQL query names only those.

The catalogue comes from the service itself: `service.metrics.Metrics` builds its own registry,
so instantiating it (and watching a write limiter, whose collector adds three series) lists every
metric with its type and label names. Prometheus' exposition adds suffixes by type: counters are
scraped as `<name>_total`, histograms as `<name>_bucket` (with `le`), `_sum` and `_count`.

Queries are parsed by a real PromQL parser (promql-parser), so a query that does not parse
fails, and every vector selector, label matcher and grouping label is checked against the
catalogue. Grafana's `$__rate_interval`-style variables are replaced by a duration first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import promql_parser
from prometheus_client.metrics import MetricWrapperBase

from service.conversations.ratelimit import WriteLimiter
from service.domain.actions import ActionKind
from service.domain.runs import RunStatus, Scope
from service.metrics import RESULT_ACTIONS, SYNC_STATUSES, Metrics

TARGET_LABELS = frozenset(
    {"namespace", "pod", "instance", "job", "service", "endpoint", "container"}
)
"""Labels Prometheus (and the Prometheus Operator) attach to every scraped series."""

SUFFIXES = {
    "counter": {"_total": ()},
    "gauge": {"": ()},
    "histogram": {"_bucket": ("le",), "_sum": (), "_count": ()},
    "summary": {"": ("quantile",), "_sum": (), "_count": ()},
}
GRAFANA_DURATIONS = re.compile(r"\$\{?__(rate_interval|interval|range)\}?")
Node = TypeVar("Node", bound=promql_parser.Expr)
WORDS = re.compile(r"^[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*$")


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name the service exposes -> the label names it carries."""
    metrics = Metrics()
    metrics.watch_limiter(WriteLimiter(1.0, max_in_flight=1))
    # prometheus-client has no public accessor for a labelled metric's label names
    labels = {
        wrapper._name: tuple(wrapper._labelnames)
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    series: dict[str, frozenset[str]] = {}
    for family in metrics.registry.collect():
        for suffix, extra in SUFFIXES[family.type].items():
            series[family.name + suffix] = frozenset({*labels.get(family.name, ()), *extra})
    return series


def known_label_values() -> dict[tuple[str, str], frozenset[str]]:
    """The closed sets of label values the service emits, read from its own definitions."""
    outcomes = {outcome for _, outcome in RESULT_ACTIONS.values()} | {"failed"}
    kinds = {kind for kind, _ in RESULT_ACTIONS.values()} | {kind.value for kind in ActionKind}
    return {
        ("usersync_actions_total", "outcome"): frozenset(outcomes),
        ("usersync_actions_total", "kind"): frozenset(kinds),
        ("usersync_users", "status"): frozenset(SYNC_STATUSES),
        ("usersync_last_success_timestamp_seconds", "scope"): frozenset({"full", "incremental"}),
        ("usersync_runs_total", "status"): frozenset(status.value for status in RunStatus),
        ("usersync_runs_total", "scope"): frozenset(scope.value for scope in Scope),
    }


@dataclass(frozen=True)
class Catalogue:
    series: Mapping[str, frozenset[str]]
    values: Mapping[tuple[str, str], frozenset[str]]

    @classmethod
    def of_the_service(cls) -> Catalogue:
        return cls(exported_series(), known_label_values())

    def problems(self, query: str) -> list[str]:
        """What is wrong with a query: unparsable, or naming a series, label or value that the
        service does not export. Empty when the query is sound."""
        try:
            expr = promql_parser.parse(GRAFANA_DURATIONS.sub("5m", query))
        except ValueError as e:
            return [f"does not parse: {e}"]
        found: list[str] = []
        names: set[str] = set()
        for selector in _nodes(expr, promql_parser.VectorSelector):
            name = selector.name
            if name not in self.series:
                found.append(f"{name!r} is not a series the service exports")
                continue
            names.add(name)
            for matcher in _matchers(selector):
                found.extend(self._matcher_problems(name, matcher))
        known = {label for name in names for label in self.series[name]} | TARGET_LABELS
        for aggregate in _nodes(expr, promql_parser.AggregateExpr):
            grouping = aggregate.modifier.labels if aggregate.modifier else []
            found.extend(
                f"groups by {label!r}, which no series here has"
                for label in grouping
                if label not in known
            )
        return found

    def _matcher_problems(self, name: str, matcher: promql_parser.Matcher) -> Iterator[str]:
        label = matcher.name
        if label not in self.series[name] | TARGET_LABELS:
            yield f"{name} has no label {label!r}"
            return
        allowed = self.values.get((name, label))
        if allowed is None:
            return
        regex = matcher.op in (promql_parser.MatchOp.Re, promql_parser.MatchOp.NotRe)
        if regex and not WORDS.match(matcher.value):
            return  # a real pattern (".*", "$var"): nothing to enumerate
        for value in matcher.value.split("|") if regex else [matcher.value]:
            if value not in allowed:
                yield f"{name}{{{label}}} is never {value!r} (it is one of {sorted(allowed)})"


def _nodes(expr: promql_parser.Expr, kind: type[Node]) -> list[Node]:
    found: list[Node] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, kind):
            found.append(node)
        return True

    promql_parser.walk(expr, visit)
    return found


def _matchers(selector: promql_parser.VectorSelector) -> list[promql_parser.Matcher]:
    matchers = selector.matchers
    return [*matchers.matchers, *(m for group in matchers.or_matchers for m in group)]
