"""Settings, built once by an entry point and passed down. Never read at import time."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of a bootvault process. Environment variables use the BOOTVAULT_ prefix.

    Each setting's docstring is its meaning in docs/settings.md, which `bootvault settings`
    generates from this class (a test fails when the committed table differs)."""

    model_config = SettingsConfigDict(env_prefix="BOOTVAULT_", extra="ignore", use_attribute_docstrings=True)

    data_dir: Path = Field(default=Path(".bootvault"))
    """Where an embedded deployment keeps everything: database, chunk store, volume pools, keys, run files."""
    database_url: str | None = None
    """SQLAlchemy URL of the metadata database; `postgresql+psycopg://...` for several hosts.
    Unset: SQLite at `<data dir>/bootvault.db`."""
    store_url: str | None = None
    """Where backup data goes: `file:///dir` or `s3://bucket/prefix?endpoint=...` (AWS credentials
    from the environment). Unset: `file://<data dir>/store`."""
    region: str = "local-1"
    """The region name the API reports and `tenancy create` writes into OCI config files."""
    realm_domain: str = "bootvault.test"
    """The realm's domain in the SDK's region definition (OCI_REGION_METADATA, docs/tls.md): clients
    that cannot take an endpoint call `https://iaas.<region>.<realm domain>`."""
    availability_domains: list[str] = Field(default_factory=lambda: ["bootvault:AD-1"])
    """The availability domains volumes can be created in (JSON list in the environment)."""
    master_key: str | None = None
    """The deployment's master key (base64 or hex of 32 bytes), the same on every host. Unset: read
    from `BOOTVAULT_MASTER_KEY_FILE`."""
    master_key_file: Path | None = None
    """File holding the master key. Unset: `<data dir>/keys/master.key`, made on first use."""
    volume_pools: dict[str, Path] = Field(default_factory=dict)
    """One pool directory per availability domain, JSON, e.g. `{"bootvault:AD-1": "/mnt/ad1"}`.
    Unset domains: `<data dir>/volumes/<AD>`."""
    worker_availability_domains: list[str] | None = None
    """The domains whose jobs this host's workers claim: give a worker only the ADs whose pools its
    host reaches. Unset: all of `BOOTVAULT_AVAILABILITY_DOMAINS`."""
    run_dir: Path | None = None
    """Sockets and pid files of the daemons that serve volumes on this host (a unix socket path is
    at most 107 bytes: keep it short, or a private directory in /tmp is used). Unset: `<data dir>/run`."""
    host: str = "127.0.0.1"
    """Address the API listens on."""
    port: int = 8420
    """Port the API listens on."""
    max_body_bytes: int = 1 << 20
    """Largest request body accepted (413 beyond); OCI bodies are small JSON documents."""
    body_timeout_seconds: float = 10.0
    """A request body must arrive within this (slow senders are cut off with 408)."""
    header_timeout_seconds: float = 10.0
    """A request's headers must arrive within this (408)."""
    max_header_bytes: int = 32 << 10
    """Largest request head accepted (431 beyond)."""
    max_connections: int = 1000
    """Open connections per API process; beyond this many, new requests get 503."""
    tls_cert: Path | None = None
    """Certificate chain (PEM) to serve HTTPS with, together with `BOOTVAULT_TLS_KEY`. Unset: plain HTTP."""
    tls_key: Path | None = None
    """The private key (PEM) of `BOOTVAULT_TLS_CERT`."""
    metrics_host: str = "127.0.0.1"
    """Address of the Prometheus metrics listener (never the API port)."""
    metrics_port: int | None = None
    """Port of the Prometheus metrics listener. Unset: no metrics listener."""
    lease_seconds: float = 30.0
    """A worker's lease on a job, renewed every third of it; a job whose lease ran out is taken
    over by another worker."""
    poll_seconds: float = 0.5
    """How often an idle worker looks for jobs when no wake-up reaches it."""
    max_job_attempts: int = 3
    """Claims of a job before its resource goes FAULTY with the reason."""
    hydrate_retries: int = 5
    """Failures (a store outage, damaged data) an instant restore's copy retries, with back-off,
    before the volume goes FAULTY."""
    hydrate_throttled_bps: int = 32 << 20
    """Bytes per second the hydration copy slows to while the machine reads the volume on demand."""
    hydrate_speed_bps: int = 0
    """A cap on the hydration copy at all times, bytes per second (0: none)."""
    block_size: int = 64 << 10
    """Block size of backups: the change-detection and deduplication granularity
    (bench/RESULTS-blocksize.md). Fixed for a deployment's life."""
    engine_threads: int = 3
    """Threads that read, hash, compress and encrypt a backup (more than the cores: volume reads
    wait on the disk)."""
    retry_token_hours: float = 24.0
    """How long an `opc-retry-token` is remembered."""
    gc_grace_seconds: float = 1800.0
    """A condemned pack is deleted only after this, and never while a job that began before (or up
    to the clock skew margin after) it was condemned runs."""
    gc_interval_seconds: float = 86400.0
    """How often workers queue a GC job (0: never; `bootvault gc` still runs one)."""
    verify_interval_seconds: float = 7 * 86400.0
    """How often workers queue a job that re-reads all stored data (0: never)."""
    max_clock_skew_seconds: float = 300.0
    """Clock difference tolerated between hosts, in GC's safety margin."""
    min_retention_seconds: float = 3600.0
    """The least `retentionSeconds` a backup policy schedule may have."""
    region_time_zone: str = "UTC"
    """IANA time zone of REGIONAL_DATA_CENTER_TIME schedules."""
    scheduler_interval_seconds: float = 5.0
    """How often every process with workers runs the policy scheduler and expiry (0: not in this
    process)."""
    retention_day_seconds: float = 86400.0
    """How long a retentionPeriod DAY lasts (a YEAR is 365 of them). Tests shorten it so a lock
    ends within a test; never change it in production."""
    api_key_cache_seconds: float = 10.0
    """A registered API key is re-read from the database at most this often per process (0: on
    every request): how long a removed key would still work."""
    api_threads: int = 4
    """Threads per API process that run database work off the event loop (few suit SQLite;
    PostgreSQL may want more)."""
    quota_volumes: int = 1000
    """Boot volumes per tenancy (400 LimitExceeded beyond)."""
    quota_volume_gbs: int = 100 * 1024
    """Provisioned GB of all boot volumes of a tenancy (volumes are thin)."""
    quota_backups: int = 10000
    """Boot volume backups per tenancy."""
    console_idle_seconds: float = 1800.0
    """The operator console (/console/): a session ends after this long without a request."""
    console_absolute_seconds: float = 12 * 3600.0
    """A console session ends this long after sign-in, whatever its use."""
    console_max_failures: int = 5
    """Console sign-in is refused for a user name after this many failures within the window."""
    console_max_address_failures: int = 20
    """... and for a client address (many users may share one) after this many."""
    console_failure_window_seconds: float = 900.0
    """The window in which console sign-in failures are counted."""
    copy_link_patience_seconds: float = 300.0
    """Cross-region copy (docs/regions.md): how long a copy keeps retrying a peer region that does
    not answer before it fails."""
    copy_stall_seconds: float = 1800.0
    """How long a destination region waits for a silent source before it turns the copy FAULTY."""
    copy_call_timeout_seconds: float = 60.0
    """The longest one region protocol call may take (a body of blocks included)."""
    copy_max_bps: int = 0
    """A cap on the bytes a copy sends per second (0: none)."""

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
