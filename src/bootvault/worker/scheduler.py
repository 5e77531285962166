"""The scheduler thread of a worker process: every `scheduler_interval_seconds`, queue the
backups policies owe (service/scheduler.run_due) and delete expired backups (expire_due).

It runs beside the job loop, not inside it, so a long backup never delays a due time. Any number
of processes may run it: see service/scheduler.py for why each due time still yields one backup."""

from __future__ import annotations

import logging
import threading
import time

from bootvault.service import copy, copy_dest, scheduler
from bootvault.service.context import Context

log = logging.getLogger("bootvault.scheduler")
PRUNE_EVERY = 3600.0  # seconds between prunes of old scheduled_runs rows


def run_scheduler(ctx: Context, stop: threading.Event) -> None:
    interval = ctx.settings.scheduler_interval_seconds
    next_prune = time.monotonic()
    while not stop.is_set():
        try:
            scheduler.run_due(ctx)
            scheduler.expire_due(ctx)
            copy_dest.expire_stalled(ctx)
            copy.copy_policy_backups(ctx)
            if time.monotonic() >= next_prune:
                scheduler.prune_runs(ctx)
                next_prune = time.monotonic() + PRUNE_EVERY
        except Exception:
            log.exception("scheduler tick failed; retrying next tick")
        stop.wait(interval)


def start_scheduler(ctx: Context, stop: threading.Event) -> threading.Thread | None:
    """One scheduler thread for this process (None when scheduler_interval_seconds is 0)."""
    if ctx.settings.scheduler_interval_seconds <= 0:
        return None
    thread = threading.Thread(target=run_scheduler, args=(ctx, stop), name="scheduler", daemon=True)
    thread.start()
    return thread
