"""Run the API with uvicorn, plus in-process workers that stop with it."""

from __future__ import annotations

import threading

import uvicorn

from bootvault.api.app import create_app
from bootvault.logs import setup_logging
from bootvault.service.context import Context
from bootvault.worker.main import start_workers


def run_server(ctx: Context, workers: int) -> None:
    setup_logging()
    stop = threading.Event()
    threads = start_workers(ctx, workers, stop)
    config = uvicorn.Config(
        create_app(ctx),
        host=ctx.settings.host,
        port=ctx.settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
