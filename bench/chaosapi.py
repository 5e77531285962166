"""The chaos run's client side: the oci SDK as a user drives it through faults, and the record of
what the service acknowledged.

`Api.call` sends one SDK call to a random API process and retries what a fault interrupted (a
refused or reset connection, a 503, a timeout) with the same `opc-retry-token` for creates, until
it gets an answer. Every HTTP status is counted; a 5xx other than 503 is a violation, kept with
the operation and the time. An acknowledged request (a 2xx) is the ground truth the invariants
check against: `Ledger` keeps them.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import oci

RETRY_FOR = 180.0  # seconds a call keeps retrying through faults before it is a violation


class Refused(Exception):
    """A 4xx answer: the service refused the request (nothing changed)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class Api:
    config: dict[str, Any]
    endpoints: list[str]
    rng: random.Random
    statuses: Counter[int] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    unanswered: int = 0  # attempts that got no HTTP answer (connection refused or reset)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)

    def client(self, endpoint: str) -> oci.core.BlockstorageClient:
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        if endpoint not in clients:
            clients[endpoint] = oci.core.BlockstorageClient(
                self.config, service_endpoint=endpoint, timeout=(5, 60)
            )
        return clients[endpoint]

    def call(self, op: str, *args: Any, retry_token: bool = False, **kw: Any) -> Any:
        """`client.<op>(*args, **kw)` until answered; 2xx -> the response, 4xx -> Refused."""
        if retry_token:
            kw["opc_retry_token"] = uuid.uuid4().hex
        deadline, last = time.monotonic() + RETRY_FOR, ""
        while True:
            with self.lock:
                endpoint = self.rng.choice(self.endpoints)
            try:
                resp = getattr(self.client(endpoint), op)(*args, **kw)
                self._count(resp.status)
                return resp
            except oci.exceptions.ServiceError as exc:
                self._count(exc.status)
                if exc.status < 500:
                    raise Refused(exc.status, exc.code, exc.message) from None
                if exc.status != 503:
                    self._violation(f"{op}: {exc.status} {exc.code} {exc.message[:200]}")
            except (oci.exceptions.RequestException, oci.exceptions.ConnectTimeout) as exc:
                with self.lock:
                    self.unanswered += 1
                last = repr(exc)[:200]
            if time.monotonic() > deadline:
                self._violation(f"{op}: no answer within {RETRY_FOR:.0f} s ({last})")
                raise TimeoutError(op)
            time.sleep(0.3)

    def _count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] += 1

    def _violation(self, what: str) -> None:
        with self.lock:
            self.violations.append(f"{time.strftime('%H:%M:%S')} {what}")


def wait_for(get: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    """Poll `get()` until `done(value)`; the last value (the caller judges a timeout)."""
    deadline = time.monotonic() + timeout
    value = get()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.5)
        value = get()
    return value


@dataclass
class Ledger:
    """What the service acknowledged, by resource id."""

    backups_created: dict[str, str] = field(default_factory=dict)  # id -> volume
    volumes_created: dict[str, str] = field(default_factory=dict)  # id -> how (restore/clone/import)
    backups_deleted: set[str] = field(default_factory=set)
    volumes_deleted: set[str] = field(default_factory=set)
    locked: set[str] = field(default_factory=set)  # retention lock (never removable)
    held: dict[str, bool] = field(default_factory=dict)  # legal hold, as last acknowledged
    names: dict[str, str] = field(default_factory=dict)  # backup id -> display name last set
    refused_deletes: Counter[str] = field(default_factory=Counter)  # why deletes were refused
    ops: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, op: str) -> None:
        with self.lock:
            self.ops[op] += 1
