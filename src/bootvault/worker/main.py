"""The worker loop: claim a job, keep its lease alive, run it, repeat."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta

from bootvault.domain.models import Job
from bootvault.service import jobs as runner
from bootvault.service import maintenance, volume_admin
from bootvault.service.context import Context
from bootvault.service.lease import Lease, LeaseLost
from bootvault.store import jobs
from bootvault.worker.scheduler import start_scheduler
from bootvault.worker.wakeup import Wakeup

log = logging.getLogger("bootvault.worker")
SCHEDULE_EVERY = 60.0  # seconds between checks for due periodic jobs (GC, verify)
RECONCILE_EVERY = 5.0  # seconds between checks that attached volumes are served


class Worker:
    def __init__(self, ctx: Context, name: str | None = None) -> None:
        self.ctx = ctx
        self.owner = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = timedelta(seconds=ctx.settings.lease_seconds)

    def run(self, stop: threading.Event) -> None:
        log.info("worker %s started", self.owner)
        wakeup = Wakeup(self.ctx.db, stop)
        next_schedule = next_reconcile = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_reconcile:
                    next_reconcile = time.monotonic() + RECONCILE_EVERY
                    volume_admin.reconcile_daemons(self.ctx)
                if time.monotonic() >= next_schedule:
                    maintenance.schedule_due(self.ctx)
                    next_schedule = time.monotonic() + SCHEDULE_EVERY
                worked = self.run_once()
            except Exception:
                log.exception("worker %s: unexpected error; backing off", self.owner)
                worked = False
            if not worked and not stop.is_set():
                wakeup.wait(self.ctx.settings.poll_seconds)
        log.info("worker %s stopped", self.owner)

    def run_once(self, job_id: str | None = None) -> bool:
        """Claim and run one job (any, or `job_id`). Returns False when there was nothing to do."""
        with self.ctx.db.write() as conn:
            job = jobs.claim(
                conn, self.owner, self.lease, job_id, self.ctx.settings.served_availability_domains
            )
        if job is None:
            return False
        log.info(
            "claimed job %s %s for %s (attempt %d)",
            job.id,
            job.kind,
            job.resource_id,
            job.attempts,
            extra={"job": job.id, "resource": job.resource_id},
        )
        lease = Lease(self.owner)
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, lease, done), daemon=True)
        beat.start()
        try:
            runner.execute(self.ctx, job, lease)
            log.info("job %s finished", job.id, extra={"job": job.id})
        except LeaseLost:
            log.warning("job %s: lease lost to another worker; abandoned", job.id, extra={"job": job.id})
        finally:
            done.set()
            beat.join()
        return True

    def _heartbeat(self, job: Job, lease: Lease, done: threading.Event) -> None:
        interval = self.ctx.settings.lease_seconds / 3
        while not done.wait(interval):
            try:
                with self.ctx.db.write() as conn:
                    renewed = jobs.renew(conn, job.id, self.owner, self.lease)
            except Exception:
                log.exception("job %s: heartbeat failed", job.id)
                continue
            if not renewed:
                lease.held = False
                return


def start_workers(ctx: Context, count: int, stop: threading.Event) -> list[threading.Thread]:
    """`count` worker threads and, when there is at least one, this process's scheduler thread."""
    threads = []
    if count > 0 and (scheduler := start_scheduler(ctx, stop)) is not None:
        threads.append(scheduler)
    for i in range(count):
        worker = Worker(ctx)
        t = threading.Thread(target=worker.run, args=(stop,), name=f"worker-{i}", daemon=True)
        t.start()
        threads.append(t)
    return threads
