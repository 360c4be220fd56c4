"""The PrometheusRule: the alerts operators need, each naming only metrics the service exports."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.files import KUSTOMIZE_BASE, load_yaml
from tests.deploy.promql import Catalogue

REQUIRED_ALERTS = {
    "UserSyncFullSyncStalled",
    "UserSyncUsersQuarantined",
    "UserSyncDeletionGuardTripped",
    "UserSyncHighFailureRate",
    "UserSyncEventQueueBacklog",
    "UserSyncEventQueueStale",
    "UserSyncNoLeader",
}


def alert_rules() -> list[dict[str, Any]]:
    rule = load_yaml(KUSTOMIZE_BASE / "prometheusrule.yaml")
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.of_the_service()


def test_the_rules_cover_what_operators_need() -> None:
    assert REQUIRED_ALERTS - {rule["alert"] for rule in alert_rules()} == set()


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_parses_and_names_only_exported_series(
    rule: dict[str, Any], catalogue: Catalogue
) -> None:
    assert catalogue.problems(rule["expr"]) == []


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_a_severity_and_says_what_happened(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]


def test_the_deletion_guard_alert_watches_the_deletions_held_now() -> None:
    """Not the held results of runs: every run that looks at a held user holds it again, and
    a trickle of one-user runs would make the alert count one deletion many times."""
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert "usersync_deletions_held" in rules["UserSyncDeletionGuardTripped"]


def test_the_no_leader_alert_also_fires_when_nothing_is_scraped() -> None:
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert "absent(usersync_is_leader)" in rules["UserSyncNoLeader"]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("sum(rate(usersync_action_total[5m]))", "'usersync_action_total' is not a series"),
        ("usersync_runs", "'usersync_runs' is not a series"),  # a counter without _total
        ('max(usersync_users{state="quarantined"})', "has no label 'state'"),
        ('max(usersync_users{status="quarantine"})', "is never 'quarantine'"),
        ('usersync_actions_total{outcome=~"failed|error"}', "is never 'error'"),
        ("sum by (reason) (usersync_runs_total)", "groups by 'reason'"),
        ("sum(rate(usersync_runs_total[5m])", "does not parse"),
    ],
)
def test_the_query_check_catches_mistakes(query: str, problem: str, catalogue: Catalogue) -> None:
    problems = catalogue.problems(query)
    assert any(problem in found for found in problems), problems
