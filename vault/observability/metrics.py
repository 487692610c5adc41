"""Prometheus metrics, and the small hooks services call to feed them.

Label values are exported in clear to whoever scrapes ``/metrics``, so they are only ever
drawn from closed sets: route templates (never raw paths), HTTP methods and statuses,
permission and outcome names. No identifier of a patient, document, professional or token
may become a label value.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import QueuePool

P = ParamSpec("P")
T = TypeVar("T")

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUESTS = Counter(
    "vault_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "vault_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response body.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
HTTP_IN_PROGRESS = Gauge(
    "vault_http_requests_in_progress",
    "Requests being answered right now.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
DOCUMENTS_INGESTED = Counter(
    "vault_documents_ingested",
    "New documents committed to the vault (idempotent retries not counted).",
    registry=REGISTRY,
)
BYTES_ENCRYPTED = Counter(
    "vault_bytes_encrypted",
    "Plaintext bytes sealed: document content or FHIR resources.",
    ["kind"],
    registry=REGISTRY,
)
ACCESS_DECISIONS = Counter(
    "vault_access_decisions",
    "Access decisions taken by the access service, by permission and outcome.",
    ["permission", "outcome"],
    registry=REGISTRY,
)
AUDIT_APPENDS = Counter(
    "vault_audit_appends",
    "Audit entries committed, by outcome of the access they record.",
    ["outcome"],
    registry=REGISTRY,
)
KEY_PROVIDER_CALLS = Counter(
    "vault_key_provider_calls",
    "Calls to the key provider (an HSM round trip with pkcs11:).",
    ["operation", "outcome"],
    registry=REGISTRY,
)
KEY_PROVIDER_DURATION = Histogram(
    "vault_key_provider_call_duration_seconds",
    "Key provider call latency.",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
    registry=REGISTRY,
)
REFUSAL_THROTTLED = Counter(
    "vault_refusal_throttled_requests",
    "Requests turned away (429) because their actor was refused access too often of late: "
    "someone probing records that are not theirs.",
    ["role"],
    registry=REGISTRY,
)
READINESS_FAILURES = Counter(
    "vault_readiness_failures",
    "Readiness checks that failed, by component.",
    ["component"],
    registry=REGISTRY,
)
DB_POOL_CHECKOUTS = Counter(
    "vault_db_pool_checkouts",
    "Connections handed out by the database pool.",
    registry=REGISTRY,
)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


@functools.cache
def _child(metric: Any, *values: str) -> Any:
    """A metric's child for these label values, found once: ``labels`` checks the values
    and takes a lock on every call, which showed in every request's profile. The label
    values come from closed sets, so the cache stays small."""
    return metric.labels(*values)


def known_method(method: str) -> str:
    # A client can send any method name: folding the unknown ones into one value keeps
    # anyone from growing the label space, or smuggling data into it, from outside.
    return method if method in HTTP_METHODS else "OTHER"


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    method = known_method(method)
    _child(HTTP_REQUESTS, method, route, str(status)).inc()
    _child(HTTP_DURATION, method, route).observe(seconds)


# -- hooks for services: one call each ----------------------------------------------------

_PENDING = "vault.metrics.pending"


def after_commit(session: Session, increment: Callable[[], None]) -> None:
    """Count something only once the transaction that did it commits: a rolled-back
    ingestion stored nothing and must not show as stored."""
    session.info.setdefault(_PENDING, []).append(increment)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for increment in session.info.pop(_PENDING, ()):
        increment()


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def document_ingested(session: Session) -> None:
    after_commit(session, DOCUMENTS_INGESTED.inc)


def audit_appended(session: Session, outcome: str, count: int = 1) -> None:
    after_commit(session, functools.partial(_child(AUDIT_APPENDS, outcome).inc, count))


def bytes_encrypted(kind: str, size: int) -> None:
    _child(BYTES_ENCRYPTED, kind).inc(size)


def access_decided(permission: str, allowed: bool) -> None:
    _child(ACCESS_DECISIONS, permission, "allowed" if allowed else "denied").inc()


def refusal_throttled(role: str) -> None:
    _child(REFUSAL_THROTTLED, role).inc()


# -- the key provider (vault/storage/keys/instrumented.py wraps it) -------------------------


def key_provider_called(operation: str, outcome: str, seconds: float) -> None:
    _child(KEY_PROVIDER_CALLS, operation, outcome).inc()
    _child(KEY_PROVIDER_DURATION, operation).observe(seconds)


# -- the database pool --------------------------------------------------------------------


class _PoolCollector(Collector):
    """Reads the pool's state at scrape time, so the figures are never stale."""

    def __init__(self) -> None:
        self._engine: weakref.ref[Engine] | None = None
        self._listening: weakref.WeakSet[Engine] = weakref.WeakSet()

    def watch(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)
        if engine not in self._listening:
            event.listen(engine, "checkout", _count_checkout)
            self._listening.add(engine)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        engine = self._engine() if self._engine is not None else None
        pool = engine.pool if engine is not None else None
        if not isinstance(pool, QueuePool):
            return
        yield GaugeMetricFamily(
            "vault_db_pool_size", "Connections the pool keeps open.", value=pool.size()
        )
        yield GaugeMetricFamily(
            "vault_db_pool_checked_out", "Connections in use now.", value=pool.checkedout()
        )
        yield GaugeMetricFamily(
            "vault_db_pool_checked_in", "Idle connections in the pool.", value=pool.checkedin()
        )
        yield GaugeMetricFamily(
            "vault_db_pool_overflow",
            "Connections opened beyond the pool size (negative: unused capacity).",
            value=pool.overflow(),
        )


def _count_checkout(*_args: object) -> None:
    DB_POOL_CHECKOUTS.inc()


_POOL = _PoolCollector()
REGISTRY.register(_POOL)


def watch_pool(engine: Engine) -> None:
    _POOL.watch(engine)


# -- exposition ---------------------------------------------------------------------------


def render() -> tuple[bytes, str]:
    """The exposition text. Under several worker processes (PROMETHEUS_MULTIPROC_DIR set),
    the workers' files are aggregated; pool gauges are per process and left out then."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
