"""The scale-out shape: two API processes and two workers on one PostgreSQL and one SeaweedFS.

20 backups of 5 volumes go in through both API processes at once; the worker holding a running
job is killed with SIGKILL; every backup still ends AVAILABLE and restores bit for bit, and every
job ran to success exactly once after the kill (the killed one was claimed twice)."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
    UpdateBootVolumeBackupDetails,
)
from sqlalchemy import create_engine, text

from tests.dbs import pg_schema_url
from tests.helpers import BIN, MIB, Tenant, free_port, wait_hydrated, wait_port, wait_state

pytestmark = pytest.mark.slow(5)

VOLUMES, PER_VOLUME = 5, 4
GIB = 1 << 30


class Cluster:
    def __init__(self, root: Path, db_url: str, s3) -> None:  # type: ignore[no-untyped-def]
        self.root = root
        self.db_url = db_url
        bucket = s3.make_bucket()
        self.base_env = {
            **os.environ,
            "BOOTVAULT_DATABASE_URL": db_url,
            "BOOTVAULT_STORE_URL": f"s3://{bucket}/cluster?endpoint={s3.endpoint}",
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "BOOTVAULT_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "BOOTVAULT_VOLUME_POOLS": json.dumps({"bootvault:AD-1": str(root / "shared-pool")}),
            # One host: its processes share the daemons' run directory (docs/deploy.md), so a worker
            # finds (and stops) the transient daemon a killed worker left on a volume.
            "BOOTVAULT_RUN_DIR": str(root / "run"),
            "BOOTVAULT_LEASE_SECONDS": "3",
            "BOOTVAULT_POLL_SECONDS": "0.1",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: list[int] = []

    def env(self, name: str) -> dict[str, str]:
        """Each process has its own data dir: nothing is shared but the DB, S3, the pool and
        the host's run directory."""
        return {**self.base_env, "BOOTVAULT_DATA_DIR": str(self.root / name)}

    def cli(self, *args: str) -> str:
        run = subprocess.run(
            [str(BIN / "bootvault"), *args],
            env=self.env("admin"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, f"bootvault {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}"
        return (run.stdout.strip().splitlines() or [""])[-1]

    def volume_matches(self, volume_id: str, image: Path) -> bool:
        """The volume's qcow2 file in the shared pool holds exactly the image (zeros beyond it),
        as QEMU reads it (`qemu-img compare`, which skips what is unallocated in both)."""
        pool_dir = Path(json.loads(self.base_env["BOOTVAULT_VOLUME_POOLS"])["bootvault:AD-1"])
        run = subprocess.run(
            [
                "qemu-img",
                "compare",
                "-U",
                "-f",
                "qcow2",
                "-F",
                "raw",
                str(pool_dir / f"{volume_id}.qcow2"),
                str(image),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode in (0, 1), f"qemu-img compare failed: {run.stderr}"
        return run.returncode == 0

    def spawn(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        self.procs[name] = subprocess.Popen(
            [str(BIN / "bootvault"), *args], env=self.env(name), stdout=log, stderr=subprocess.STDOUT
        )

    def start(self) -> None:
        self.cli("migrate")
        for i in range(2):
            port = free_port()
            self.ports.append(port)
            self.spawn(f"api{i}", "serve", "--workers", "0", "--port", str(port))
        for i in range(2):
            self.spawn(f"worker{i}", "worker")
        for port in self.ports:
            wait_port(port)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def sql(self, query: str) -> list:  # type: ignore[type-arg]
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(query)))
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    with pg_schema_url() as url:
        c = Cluster(tmp_path_factory.mktemp("cluster"), url, s3_server)
        c.start()
        try:
            yield c
        finally:
            c.stop()


def _image(path: Path, seed: int) -> None:
    """32 MiB, 24 MiB of it data: enough that a backup is seen running (it was twice that until
    the suite had to be quicker; the size is not what is tested)."""
    rng = random.Random(seed)
    with open(path, "wb") as fh:
        fh.truncate(32 * MIB)
        for off in range(0, 24 * MIB, 4 * MIB):
            fh.seek(off)
            fh.write(rng.randbytes(2 * MIB) + bytes(range(256)) * (2 * MIB // 256))


def _kill_a_busy_worker(cluster: Cluster) -> str:
    """SIGKILL the worker process that holds a running backup job; returns that job's id."""
    pids = {str(p.pid): name for name, p in cluster.procs.items() if name.startswith("worker")}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for job_id, owner in cluster.sql(
            "SELECT id, lease_owner FROM jobs WHERE state = 'RUNNING' AND kind = 'BACKUP'"
        ):
            name = pids.get(owner.split(":")[1])
            if not name:
                continue
            # Freeze it first: a job that finished between the query and the kill was not killed.
            pid = cluster.procs[name].pid
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.2)  # a commit already sent lands meanwhile
            (state,) = cluster.sql(f"SELECT state FROM jobs WHERE id = '{job_id}'")[0]
            if state != "RUNNING":
                os.kill(pid, signal.SIGCONT)
                continue
            os.kill(pid, signal.SIGKILL)
            cluster.procs[name].wait()
            return job_id
        time.sleep(0.01)
    raise AssertionError("no backup job was ever seen running")


def test_two_apis_two_workers_survive_a_killed_worker(cluster: Cluster, tmp_path: Path) -> None:
    config = tmp_path / "oci" / "config"
    tenancy = cluster.cli("tenancy", "create", "--name", "cluster", "--oci-config", str(config))
    images, volume_ids = [], []
    for i in range(VOLUMES):
        image = tmp_path / f"disk{i}.img"
        _image(image, seed=i)
        images.append(image)
        volume_ids.append(cluster.cli("volume", "import", "--compartment", tenancy, str(image)))
    tenants = [Tenant("cluster", tenancy, config, f"http://127.0.0.1:{port}") for port in cluster.ports]

    def create(n: int) -> str:
        client = tenants[n % 2].client(retry_strategy=oci.retry.DEFAULT_RETRY_STRATEGY)
        details = CreateBootVolumeBackupDetails(
            boot_volume_id=volume_ids[n % VOLUMES],
            display_name=f"b{n}",
            type="FULL" if n < VOLUMES else "INCREMENTAL",
        )
        return client.create_boot_volume_backup(details).data.id

    with ThreadPoolExecutor(max_workers=10) as pool:
        backup_ids = list(pool.map(create, range(VOLUMES * PER_VOLUME)))
    killed_job = _kill_a_busy_worker(cluster)

    client = tenants[0].client()
    for backup_id in backup_ids:
        backup = wait_state(
            client, "get_boot_volume_backup", backup_id, ("AVAILABLE", "FAULTY"), timeout=300
        ).data
        assert backup.lifecycle_state == "AVAILABLE", backup.system_tags
    rows = cluster.sql("SELECT id, state, attempts FROM jobs WHERE kind = 'BACKUP'")
    assert len(rows) == VOLUMES * PER_VOLUME and {r.state for r in rows} == {"SUCCEEDED"}
    assert {r.id: r.attempts for r in rows}[killed_job] == 2  # taken over after its lease expired

    restores = []
    for n, backup_id in enumerate(backup_ids):  # every restore in flight at once, via both APIs
        details = CreateBootVolumeDetails(
            compartment_id=tenancy,
            availability_domain="bootvault:AD-1",
            source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
        )
        restores.append(tenants[n % 2].client().create_boot_volume(details).data.id)
    for n, volume_id in enumerate(restores):
        wait_hydrated(client, volume_id, timeout=300)  # its qcow2 holds every block, no backing
        assert cluster.volume_matches(volume_id, images[n % VOLUMES]), f"backup {n} differs"


def test_retry_tokens_and_etags_hold_across_api_processes(cluster: Cluster, tmp_path: Path) -> None:
    config = tmp_path / "oci" / "config"
    tenancy = cluster.cli("tenancy", "create", "--name", "race", "--oci-config", str(config))
    image = tmp_path / "small.img"
    image.write_bytes(os.urandom(MIB))
    volume_id = cluster.cli("volume", "import", "--compartment", tenancy, str(image))
    tenants = [Tenant("race", tenancy, config, f"http://127.0.0.1:{port}") for port in cluster.ports]
    details = CreateBootVolumeBackupDetails(boot_volume_id=volume_id, display_name="once")

    def create(n: int) -> str:
        client = tenants[n % 2].client()
        return client.create_boot_volume_backup(details, opc_retry_token="same-token-both-apis").data.id

    with ThreadPoolExecutor(max_workers=12) as pool:
        ids = set(pool.map(create, range(12)))
    assert len(ids) == 1
    client = tenants[0].client()
    assert [b.id for b in client.list_boot_volume_backups(tenancy, display_name="once").data] == list(ids)
    backup = wait_state(client, "get_boot_volume_backup", ids.pop(), "AVAILABLE")
    etag = backup.headers["etag"]

    def rename(n: int) -> int:
        try:
            tenants[n % 2].client().update_boot_volume_backup(
                backup.data.id, UpdateBootVolumeBackupDetails(display_name=f"winner-{n}"), if_match=etag
            )
            return 200
        except oci.exceptions.ServiceError as exc:
            return exc.status

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = sorted(pool.map(rename, range(12)))
    assert statuses == [200] + [412] * 11  # exactly one conditional update wins
