"""Prometheus metrics of one served app, in its own `CollectorRegistry` (never the global one).

Three kinds of feed: events as they happen (a run's report, each HTTP attempt of the client
through its observer hook, each event batch), the shared write limiter read at scrape time, and
"vitals" read from the database just before each scrape (queue depth and age, users by sync
status, last successful runs), so every replica, leader or standby, reports the same truth.
Freshness is a timestamp gauge: alert on `time() - usersync_last_success_timestamp_seconds`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.conversations.ratelimit import WriteLimiter
from service.conversations.stats import CallEvent
from service.domain.outcome import Result
from service.domain.runs import RunStatus, Scope
from service.domain.users import SyncStatus
from service.reconcile.run import RunReport

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
SYNC_STATUSES = tuple(status.value for status in SyncStatus)

RESULT_ACTIONS: Mapping[str, tuple[str, str]] = {
    Result.CREATED: ("create", "ok"),
    Result.UPDATED: ("update", "ok"),
    Result.ADOPTED: ("adopt", "ok"),
    Result.LINKED: ("link", "ok"),
    Result.DELETED: ("delete", "ok"),
    Result.UNCHANGED: ("none", "unchanged"),
    Result.INVALID: ("validate", "invalid"),
    Result.HELD: ("delete", "held"),
    Result.WAITING: ("none", "waiting"),
    Result.DEFERRED: ("none", "deferred"),
    Result.PLANNED: ("plan", "dry_run"),
    Result.SUSPENDED: ("suspend", "ok"),
}
"""Per-user results of a run as (action kind, outcome); failures come with their own action."""


@dataclass(frozen=True, slots=True)
class Vitals:
    queue_depth: int
    oldest_event_age_seconds: float
    users_by_status: Mapping[str, int]
    last_full_success: datetime | None
    last_incremental_success: datetime | None
    deletions_held: int = 0
    suspensions_due: int = 0
    writes_held: int = 0


class _LimiterCollector(Collector):
    """Reads the shared write limiter's own counters when scraped."""

    def __init__(self, limiter: WriteLimiter) -> None:
        self._limiter = limiter

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "usersync_write_wait_seconds",
            "Seconds writes spent waiting for their turn in the write limiter",
            value=self._limiter.write_wait_seconds,
        )
        yield CounterMetricFamily(
            "usersync_writes", "Writes let through the write limiter", value=self._limiter.writes
        )
        yield GaugeMetricFamily(
            "usersync_write_rate",
            "Writes per second the pacer paces at now (adaptive: below the ceiling after 429s)",
            value=self._limiter.rate,
        )
        yield GaugeMetricFamily(
            "usersync_write_arrival_margin_seconds",
            "Seconds beyond one second any K+1 consecutive writes are spread over now (K: the"
            " pace rounded up): the measured jitter of write round trips, 3.3 standard"
            " deviations of the gap between two arrivals, 2 at the plateau after a cut",
            value=self._limiter.arrival_margin,
        )
        yield CounterMetricFamily(
            "usersync_write_rate_cuts",
            "Times the pacer cut its write rate after a write was answered 429",
            value=self._limiter.cuts,
        )
        yield GaugeMetricFamily(
            "usersync_api_requests_in_flight",
            "Requests to the Users API in flight now",
            value=self._limiter.in_flight,
        )


class Metrics:
    """Every metric of one app; the names are the contract with dashboards and alerts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        count, gauge = self._counter, self._gauge
        self.runs = count("usersync_runs", "Finished runs", "trigger", "scope", "status")
        self.runs_refused = count(
            "usersync_runs_refused", "Runs not started: another held the lock", "trigger"
        )
        self.coalesced = count(
            "usersync_triggers_coalesced", "Triggers merged into a pending run", "trigger"
        )
        self.actions = count("usersync_actions", "Per-user results of runs", "kind", "outcome")
        self.api_calls = count(
            "usersync_api_calls", "HTTP attempts to the Users API", "operation", "status"
        )
        self.api_seconds = Histogram(
            "usersync_api_call_seconds",
            "Duration of HTTP attempts",
            ["operation"],
            registry=self.registry,
        )
        self.api_retries = count("usersync_api_retries", "Attempts that were retries", "operation")
        self.rate_limited = count("usersync_api_rate_limited", "Answers with 429", "operation")
        self.events_received = count(
            "usersync_events_received", "Events queued by this replica", "source"
        )
        self.events_done = count("usersync_events_done", "Events closed", "outcome")
        self.event_latency = Histogram(
            "usersync_event_latency_seconds",
            "From an event's enqueue to its user's outcome recorded",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = gauge("usersync_event_queue_depth", "Events not yet done")
        self.oldest_event_age = gauge(
            "usersync_event_queue_oldest_age_seconds", "Age of the oldest pending event"
        )
        self.users = gauge("usersync_users", "Users by sync status", "status")
        self.last_success = gauge(
            "usersync_last_success_timestamp_seconds",
            "End of the last successful run (not dry), by scope; 0 if none",
            "scope",
        )
        self.is_leader = gauge("usersync_is_leader", "1 if this replica is the leader")
        self.deletions_held = gauge(
            "usersync_deletions_held",
            "Deletions held by the guards now, of every run (released by --allow-deletes)",
        )
        self.suspensions_due = gauge(
            "usersync_suspended_users_due",
            "Suspended users whose deletion grace period is over and who are not deleted yet",
        )
        self.writes_held = gauge(
            "usersync_writes_held",
            "Users the write guard holds now, of every run (released by --allow-writes)",
        )
        self.users_written = self._counter(
            "usersync_users_written",
            "Users created or updated by runs (each may count as active that month)",
            "trigger",
        )

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def _gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)

    def watch_limiter(self, limiter: WriteLimiter) -> None:
        self.registry.register(_LimiterCollector(limiter))

    def observe_call(self, event: CallEvent) -> None:
        """The client's observer hook: quick, never raises."""
        status = str(event.status) if event.status is not None else (event.error or "error")
        self.api_calls.labels(event.operation, status).inc()
        self.api_seconds.labels(event.operation).observe(event.seconds)
        if event.attempt > 0:
            self.api_retries.labels(event.operation).inc()
        if event.status == 429:
            self.rate_limited.labels(event.operation).inc()

    def observe_run(self, report: RunReport) -> None:
        request = report.request
        self.runs.labels(request.trigger, request.scope.value, report.status.value).inc()
        if not request.dry_run:
            self.users_written.labels(request.trigger).inc(report.users_written)
        for result, count in report.counts.items():
            kind, outcome = RESULT_ACTIONS.get(result, ("", ""))
            if kind and count:
                self.actions.labels(kind, outcome).inc(count)
        for _, failure in report.failures:
            self.actions.labels(failure.action, "failed").inc()

    def observe_unrecorded_run(self, *, trigger: str, scope: str) -> None:
        """A run that raised before it was recorded, or while it was (a run that failed or
        was aborted once recorded is observed from its report, with the status recorded)."""
        self.runs.labels(trigger, scope, RunStatus.FAILED.value).inc()

    def observe_events(self, latencies: list[float]) -> None:
        self.events_done.labels("applied").inc(len(latencies))
        for seconds in latencies:
            self.event_latency.observe(seconds)

    def update_vitals(self, vitals: Vitals) -> None:
        self.queue_depth.set(vitals.queue_depth)
        self.deletions_held.set(vitals.deletions_held)
        self.suspensions_due.set(vitals.suspensions_due)
        self.writes_held.set(vitals.writes_held)
        self.oldest_event_age.set(vitals.oldest_event_age_seconds)
        for status in {*SYNC_STATUSES, *vitals.users_by_status}:
            self.users.labels(status).set(vitals.users_by_status.get(status, 0))
        for scope, when in (
            (Scope.FULL, vitals.last_full_success),
            (Scope.INCREMENTAL, vitals.last_incremental_success),
        ):
            self.last_success.labels(scope.value).set(when.timestamp() if when else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
