"""Prometheus metrics of one process, served on a listener of their own (`metrics_port`), never
on the public API port. Job counts by state come from the database at scrape time, so every
process shows the whole queue."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("bootvault.metrics")
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "bootvault_requests",
    "API requests by OCI operation and status.",
    ["operation", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "bootvault_request_seconds",
    "API request latency by OCI operation.",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
JOBS = Counter("bootvault_jobs", "Jobs run by kind and outcome.", ["kind", "outcome"], registry=REGISTRY)
JOB_SECONDS = Histogram(
    "bootvault_job_seconds",
    "Job duration by kind.",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
    registry=REGISTRY,
)
BACKUP_BYTES = Counter(
    "bootvault_backup_bytes",
    "Backup bytes: read from volumes, stored (new, compressed and encrypted) and deduplicated.",
    ["kind"],
    registry=REGISTRY,
)
GC = Counter("bootvault_gc", "Garbage collection results.", ["result"], registry=REGISTRY)
VERIFY = Counter("bootvault_verify_backups", "Backups verified, by outcome.", ["outcome"], registry=REGISTRY)


class _QueueCollector(Collector):
    def __init__(self, db: object) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from bootvault.store import jobs

        family = GaugeMetricFamily(
            "bootvault_jobs_current", "Jobs in the queue by kind and state.", labels=["kind", "state"]
        )
        try:
            with self.db.read() as conn:  # type: ignore[attr-defined]
                rows = jobs.counts_by_kind_and_state(conn)
        except Exception as exc:  # a scrape must not fail because the database is away
            log.warning("queue metrics unavailable: %s", exc)
            rows = []
        for kind, state, count in rows:
            family.add_metric([kind, state], count)
        yield family


def serve_metrics(db: object, host: str, port: int) -> None:
    """Start the metrics listener (a daemon thread of prometheus_client)."""
    REGISTRY.register(_QueueCollector(db))
    start_http_server(port, addr=host, registry=REGISTRY)
    log.info("metrics on http://%s:%d/metrics", host, port)
