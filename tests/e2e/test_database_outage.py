"""The API while its PostgreSQL is unreachable (found by the chaos soak, bench/chaos.py, when it
terminated the database's backends): a request answers 503 ServiceUnavailable, which the SDK
retries, never 500; once the database is back the same request succeeds. The outage is real: the
server reaches PostgreSQL through a TCP relay that the test cuts (every open connection dropped,
new ones refused) and restores."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import oci
import pytest
from sqlalchemy import make_url

from tests.dbs import pg_schema_url
from tests.helpers import Deployment, free_port


class Relay:
    """A TCP relay from a loopback port to PostgreSQL that can be cut and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        assert self.listener is not None
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
        self.listener.close()
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def relayed(tmp_path: Path) -> Iterator[tuple[Deployment, Relay]]:
    with pg_schema_url() as url:
        parsed = make_url(url)
        relay = Relay((parsed.host or "127.0.0.1", parsed.port or 5432))
        relay.start()
        dep = Deployment(tmp_path, workers=0)
        dep.env["BOOTVAULT_DATABASE_URL"] = parsed.set(port=relay.port).render_as_string(hide_password=False)
        dep.start()
        try:
            yield dep, relay
        finally:
            dep.stop()
            relay.cut()


def test_unreachable_database_answers_503_then_recovers(relayed: tuple[Deployment, Relay]) -> None:
    dep, relay = relayed
    tenant = dep.new_tenant("outage")
    client = tenant.client()
    assert client.list_boot_volumes(compartment_id=tenant.tenancy_id).status == 200
    relay.cut()
    for call in (
        lambda: client.list_boot_volumes(compartment_id=tenant.tenancy_id),
        lambda: client.list_boot_volume_backups(tenant.tenancy_id),
    ):
        with pytest.raises(oci.exceptions.ServiceError) as err:
            call()
        assert (err.value.status, err.value.code) == (503, "ServiceUnavailable"), err.value
        assert "database" in err.value.message
    relay.start()
    assert client.list_boot_volumes(compartment_id=tenant.tenancy_id).status == 200
