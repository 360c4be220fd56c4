"""The Grafana dashboard: valid JSON, a sound layout, and queries over real series only."""

from __future__ import annotations

import json
from itertools import combinations
from typing import Any

import pytest

from tests.deploy.files import DASHBOARD_FILE
from tests.deploy.promql import Catalogue

GRID_WIDTH = 24


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD_FILE.read_text(encoding="utf-8")))


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def targets() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in panels() for target in panel["targets"]]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.of_the_service()


@pytest.mark.parametrize(("title", "expr"), targets(), ids=[t for t, _ in targets()])
def test_panel_query_parses_and_names_only_exported_series(
    title: str, expr: str, catalogue: Catalogue
) -> None:
    assert catalogue.problems(expr) == []


def test_the_dashboard_covers_every_exported_series_family(catalogue: Catalogue) -> None:
    queried = " ".join(expr for _, expr in targets())
    families = {name.removesuffix("_bucket") for name in catalogue.series if "_sum" not in name}
    families = {name for name in families if not name.endswith("_count")}
    assert sorted(name for name in families if name not in queried) == []


def test_the_dashboard_shows_what_operators_look_for() -> None:
    titles = " ".join(panel["title"] for panel in panels()).lower()
    for topic in ("full run", "leader", "quarantined", "actions", "queue", "429", "calls"):
        assert topic in titles


def test_panels_fit_the_grid_without_overlapping() -> None:
    boxes = [(panel["title"], panel["gridPos"]) for panel in dashboard()["panels"]]
    for title, box in boxes:
        assert box["x"] >= 0
        assert box["x"] + box["w"] <= GRID_WIDTH, title
    for (first, a), (second, b) in combinations(boxes, 2):
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, f"{first!r} overlaps {second!r}"


def test_ids_and_ref_ids_are_unique() -> None:
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_every_query_uses_the_datasource_and_namespace_variables() -> None:
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]


def test_the_namespace_variable_reads_an_exported_series(catalogue: Catalogue) -> None:
    variable = next(v for v in dashboard()["templating"]["list"] if v["name"] == "namespace")
    query = variable["query"]["query"]
    series = query.removeprefix("label_values(").split(",")[0]
    assert series in catalogue.series
