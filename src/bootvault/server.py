"""Run the API with uvicorn (httptools, uvloop), in one process or several sharing one socket,
plus in-process job workers that stop with it."""

from __future__ import annotations

import gc
import threading
from typing import Any

import uvicorn

from bootvault.api.app import create_app
from bootvault.api.http import GuardedHttpToolsProtocol
from bootvault.config import Settings
from bootvault.console.routes import install as install_console
from bootvault.logs import setup_logging
from bootvault.service.context import Context
from bootvault.worker.main import start_workers


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    GuardedHttpToolsProtocol.header_timeout = settings.header_timeout_seconds
    GuardedHttpToolsProtocol.max_header_bytes = settings.max_header_bytes
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": GuardedHttpToolsProtocol,
        "loop": "uvloop",
        "log_config": None,
        "access_log": False,
        "timeout_keep_alive": 30,
        "timeout_graceful_shutdown": 5,
        "limit_concurrency": settings.max_connections,
        "backlog": 2048,
    }
    if settings.tls_cert:
        options.update(ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key))
    return options


def build_app(ctx: Context) -> Any:
    """The OCI API and, on the same listener, the operator console under /console/."""
    app = create_app(ctx)
    install_console(app)
    return app


def _freeze_heap() -> None:
    """Move everything allocated at start-up (modules, SQLAlchemy's and the SDK's structures) out
    of the cyclic collector's reach: a full collection then walks only what requests allocate,
    instead of pausing every request for the whole heap now and then."""
    gc.collect()
    gc.freeze()


def app_from_env() -> Any:
    """The application of an API child process: settings come from the BOOTVAULT_ environment."""
    setup_logging()
    settings = Settings()
    _uvicorn_options(settings)  # the protocol's limits, in this process too
    app = build_app(Context.open(settings, migrate=False))
    _freeze_heap()
    return app


def run_server(ctx: Context, workers: int, processes: int = 1) -> None:
    """Serve until stopped. processes > 1: that many API processes share the listening socket
    (uvicorn's supervisor restarts any that dies); the job workers stay in this one."""
    setup_logging()
    stop = threading.Event()
    threads = start_workers(ctx, workers, stop)
    options = _uvicorn_options(ctx.settings)
    try:
        if processes > 1:
            uvicorn.run("bootvault.server:app_from_env", factory=True, workers=processes, **options)
        else:
            app = build_app(ctx)
            _freeze_heap()
            uvicorn.Server(uvicorn.Config(app, **options)).run()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
