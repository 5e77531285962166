"""Settings, built once by an entry point and passed down. Never read at import time."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of a bootvault process. Environment variables use the BOOTVAULT_ prefix."""

    model_config = SettingsConfigDict(env_prefix="BOOTVAULT_", extra="ignore")

    data_dir: Path = Field(default=Path(".bootvault"))
    database_url: str | None = None  # default: sqlite in data_dir
    store_url: str | None = None  # default: data_dir/store
    region: str = "local-1"
    # The realm's domain in the SDK's region definition (OCI_REGION_METADATA, see docs/tls.md):
    # clients that cannot take an endpoint call https://iaas.<region>.<realm_domain>.
    realm_domain: str = "bootvault.test"
    availability_domains: list[str] = Field(default_factory=lambda: ["bootvault:AD-1"])
    # The deployment's master key (base64 or hex of 32 bytes), the same on every host. Without it
    # the key is read from master_key_file, by default <data_dir>/keys/master.key, made on first use.
    master_key: str | None = None
    master_key_file: Path | None = None
    # Volume pools: one directory per availability domain (default <data_dir>/volumes/<AD>).
    # A worker only claims jobs of the ADs it serves (default: all), so give a worker only the
    # ADs whose pools its host reaches. JSON in the environment, e.g. {"bootvault:AD-1": "/mnt/ad1"}.
    volume_pools: dict[str, Path] = Field(default_factory=dict)
    worker_availability_domains: list[str] | None = None
    # Sockets and pid files of the daemons that serve volumes on this host (default <data>/run).
    # Unix socket paths are limited to 107 bytes: keep this short.
    run_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8420
    # Request limits: OCI bodies are small JSON documents. Headers are capped by the HTTP layer.
    max_body_bytes: int = 1 << 20
    body_timeout_seconds: float = 10.0  # a body must arrive within this (slow senders are cut off)
    header_timeout_seconds: float = 10.0  # a request's headers must arrive within this
    max_header_bytes: int = 32 << 10
    max_connections: int = 1000  # beyond this many, new requests get 503
    # HTTPS: a certificate chain and its key (PEM). Without them the API is plain HTTP.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Prometheus metrics on a listener of their own (off by default; never on the API port).
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    # Job leases: a worker renews its lease every lease_seconds/3; a job whose lease ran out is
    # taken over by another worker (the restart rule for every transient state).
    lease_seconds: float = 30.0
    poll_seconds: float = 0.5
    max_job_attempts: int = 3
    # Instant restore: the copy from the backup retries a failing store this many times (with
    # backoff) before the volume goes FAULTY, and slows to this rate while the machine reads.
    hydrate_retries: int = 5
    hydrate_throttled_bps: int = 32 << 20
    hydrate_speed_bps: int = 0  # a cap on the copy at all times (0: none)
    block_size: int = 64 << 10  # change-detection granularity of backups (see docs/architecture.md)
    engine_threads: int = 3  # more than the cores: volume reads (O_DIRECT) wait on the disk
    retry_token_hours: float = 24.0
    # Garbage collection: a condemned pack is deleted only after this grace period, and never
    # while a job that began before (or up to the skew margin after) it was condemned runs.
    gc_grace_seconds: float = 1800.0
    gc_interval_seconds: float = 86400.0  # 0 disables the periodic GC job
    verify_interval_seconds: float = 7 * 86400.0  # 0 disables the periodic verify job
    max_clock_skew_seconds: float = 300.0
    # Backup policies. A schedule's retentionSeconds must be at least min_retention_seconds (tests
    # lower it to seconds). REGIONAL_DATA_CENTER_TIME schedules run in region_time_zone (IANA name).
    # Every process with workers runs the scheduler and expiry every scheduler_interval_seconds
    # (0: not in this process).
    min_retention_seconds: float = 3600.0
    region_time_zone: str = "UTC"
    scheduler_interval_seconds: float = 5.0
    # How long a retentionPeriod DAY lasts (a YEAR is 365 of them). Tests shorten it so a retention
    # lock ends within a test; never change it in production.
    retention_day_seconds: float = 86400.0
    # A registered API key is re-read from the database at most this often per process (0: on
    # every request). Keys are never deleted today; this bounds how long a removed one would work.
    api_key_cache_seconds: float = 10.0
    # Threads per API process that run service calls (database work) off the event loop. Few
    # threads suit SQLite (one writer; more threads only contend for the GIL); PostgreSQL may
    # want more, as its calls wait on the network.
    api_threads: int = 4
    # Per-tenancy quotas (400 LimitExceeded beyond them).
    quota_volumes: int = 1000
    quota_volume_gbs: int = 100 * 1024  # provisioned size of all volumes (they are thin)
    quota_backups: int = 10000
    # Cross-region copy (docs/regions.md): how long a copy keeps retrying a peer region that does
    # not answer before it fails, and how long a destination waits for a silent source before it
    # turns the copy FAULTY.
    copy_link_patience_seconds: float = 300.0
    copy_stall_seconds: float = 1800.0
    copy_call_timeout_seconds: float = 60.0  # one region protocol call (a body of blocks included)
    copy_max_bps: int = 0  # a cap on the bytes a copy sends per second (0: none)

    @field_validator("region_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"region_time_zone {value!r} is not an IANA time zone") from exc
        return value

    @cached_property
    def region_zone(self) -> ZoneInfo:
        return ZoneInfo(self.region_time_zone)

    def resolved(self) -> Settings:
        """A copy with absolute paths and the embedded defaults filled in."""
        data_dir = self.data_dir.expanduser().resolve()
        return self.model_copy(
            update={
                "data_dir": data_dir,
                "database_url": self.database_url or f"sqlite:///{data_dir / 'bootvault.db'}",
                "store_url": self.store_url or f"file://{data_dir / 'store'}",
                "run_dir": (self.run_dir or data_dir / "run").expanduser().resolve(),
            }
        )

    def as_env(self) -> dict[str, str]:
        """These settings as BOOTVAULT_ variables, for the helper processes this one starts."""
        env = {}
        for name, value in self.model_dump(mode="json").items():
            if value is not None:
                env[f"BOOTVAULT_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        return env

    @property
    def served_availability_domains(self) -> list[str]:
        return self.worker_availability_domains or self.availability_domains

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"
