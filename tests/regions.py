"""Two (or more) bootvault regions on one machine: each its own data dir, port and database, and
the pairing commands an operator runs (docs/regions.md)."""

from __future__ import annotations

from pathlib import Path

import oci

from tests.helpers import Deployment, Tenant


class Region(Deployment):
    """A Deployment serving region `name` (BOOTVAULT_REGION)."""

    def __init__(self, root: Path, name: str, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(root, **kw)
        self.name = name
        self.env["BOOTVAULT_REGION"] = name
        self.env["BOOTVAULT_SCHEDULER_INTERVAL_SECONDS"] = "1"
        self.env["BOOTVAULT_MIN_RETENTION_SECONDS"] = "1"  # policy copies expire within a test
        self.env["BOOTVAULT_COPY_CALL_TIMEOUT_SECONDS"] = "5"

    def peers(self) -> list[str]:
        return self.cli("region", "list").stdout.split()[::2]


def pair(a: Region, b: Region) -> None:
    """`region invite` on a, `region join` on b with the token it printed last."""
    token = a.cli("region", "invite", "--endpoint", a.endpoint).stdout.strip().splitlines()[-1]
    b.cli("region", "join", "--endpoint", b.endpoint, token)


def client_in(tenant: Tenant, region: Region) -> oci.core.BlockstorageClient:
    """The tenant's own key, pointed at another region's endpoint."""
    return oci.core.BlockstorageClient(tenant.config, service_endpoint=region.endpoint)


def work_requests_in(tenant: Tenant, region: Region) -> oci.work_requests.WorkRequestClient:
    return oci.work_requests.WorkRequestClient(tenant.config, service_endpoint=region.endpoint)
