"""SQLAlchemy Core tables. Portable between SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite keeps no zone, PostgreSQL gets the same shape."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to UtcDateTime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


OCID = String(255)

tenancies = Table(
    "tenancies",
    metadata,
    Column("id", OCID, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", OCID, primary_key=True),
    Column("tenancy_id", OCID, nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("user_id", OCID, primary_key=True),
    Column("fingerprint", String(64), primary_key=True),
    Column("tenancy_id", OCID, nullable=False),
    Column("public_key_pem", Text, nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
)

compartments = Table(
    "compartments",
    metadata,
    Column("id", OCID, primary_key=True),
    Column("tenancy_id", OCID, nullable=False, index=True),
    Column("parent_id", OCID, nullable=True),
    Column("name", String(255), nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
)

kms_keys = Table(
    "kms_keys",
    metadata,
    Column("id", OCID, primary_key=True),
    Column("tenancy_id", OCID, nullable=False, index=True),
    Column("display_name", String(255), nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=True),  # key material, AES-GCM-wrapped by the master key
)

boot_volumes = Table(
    "boot_volumes",
    metadata,
    Column("id", OCID, primary_key=True),
    Column("tenancy_id", OCID, nullable=False),
    Column("compartment_id", OCID, nullable=False),
    Column("availability_domain", String(255), nullable=False),
    Column("display_name", String(255), nullable=False),
    Column("lifecycle_state", String(32), nullable=False),
    Column("size_in_gbs", Integer, nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
    Column("etag", String(64), nullable=False),
    Column("freeform_tags", JSON, nullable=False),
    Column("defined_tags", JSON, nullable=False),
    Column("source_type", String(32), nullable=True),
    Column("source_id", OCID, nullable=True),
    Column("kms_key_id", OCID, nullable=True),
    Column("vpus_per_gb", Integer, nullable=False),
    Column("is_hydrated", Boolean, nullable=False),
    Column("image_id", OCID, nullable=True),
    Column("lifecycle_details", Text, nullable=True),
    Column("attachment_uri", Text, nullable=True),
    Column("time_attached", UtcDateTime, nullable=True),
    Column("hydration_percent", Integer, nullable=True),
    Column("xrc_kms_key_id", OCID, nullable=True),  # the destination key of its policy copies
    Index("ix_boot_volumes_compartment", "tenancy_id", "compartment_id"),
)

boot_volume_backups = Table(
    "boot_volume_backups",
    metadata,
    Column("id", OCID, primary_key=True),
    Column("tenancy_id", OCID, nullable=False),
    Column("compartment_id", OCID, nullable=False),
    Column("boot_volume_id", OCID, nullable=False),
    Column("display_name", String(255), nullable=False),
    Column("lifecycle_state", String(32), nullable=False),
    Column("type", String(16), nullable=False),
    Column("source_type", String(16), nullable=False),
    Column("time_request_received", UtcDateTime, nullable=False),
    Column("time_created", UtcDateTime, nullable=False),  # the stable sort key (request order)
    Column("time_imaged", UtcDateTime, nullable=True),  # the image's instant: the wire's timeCreated
    Column("etag", String(64), nullable=False),
    Column("size_in_gbs", Integer, nullable=True),
    Column("kms_key_id", OCID, nullable=True),
    Column("image_id", OCID, nullable=True),
    Column("freeform_tags", JSON, nullable=False),
    Column("defined_tags", JSON, nullable=False),
    Column("percent_complete", Integer, nullable=False),
    Column("logical_size_bytes", BigInteger, nullable=True),
    Column("unique_size_bytes", BigInteger, nullable=True),
    Column("lifecycle_details", Text, nullable=True),
    Column("source_boot_volume_backup_id", OCID, nullable=True),
    Column("expiration_time", UtcDateTime, nullable=True, index=True),
    Column("schedule_retention_seconds", BigInteger, nullable=True),
    Column("retention_unit", String(8), nullable=True),  # DAYS | YEARS
    Column("retention_amount", Integer, nullable=True),
    Column("is_retention_lock_enabled", Boolean, nullable=True),
    Column("is_prevent_deletion_enabled", Boolean, nullable=True),
    Column("is_indefinite_retention_enabled", Boolean, nullable=True),
    Column("time_retention_expires_at", UtcDateTime, nullable=True),
    # List pages read rows in index order (migration 0007): by compartment, compartment and
    # state, volume, or volume and state, each then by time or by name, then id. On PostgreSQL
    # the name indexes use COLLATE "C", the order store/paging.py sorts names in.
    Index("ix_backups_time", "tenancy_id", "compartment_id", "time_created", "id"),
    Index("ix_backups_name", "tenancy_id", "compartment_id", "display_name", "id"),
    Index("ix_backups_state_time", "tenancy_id", "compartment_id", "lifecycle_state", "time_created", "id"),
    Index("ix_backups_state_name", "tenancy_id", "compartment_id", "lifecycle_state", "display_name", "id"),
    Index("ix_backups_volume_time", "boot_volume_id", "time_created", "id"),
    Index("ix_backups_volume_name", "boot_volume_id", "display_name", "id"),
    Index("ix_backups_volume_state_time", "boot_volume_id", "lifecycle_state", "time_created", "id"),
    Index("ix_backups_volume_state_name", "boot_volume_id", "lifecycle_state", "display_name", "id"),
    # The console's dashboard sums sizes by state and day from this index alone (migration 0010).
    Index(
        "ix_backups_state_sizes",
        "tenancy_id",
        "compartment_id",
        "lifecycle_state",
        "time_created",
        "unique_size_bytes",
        "logical_size_bytes",
    ),
)

volume_backup_policies = Table(
    "volume_backup_policies",
    metadata,
    Column("id", OCID, primary_key=True),
    Column("tenancy_id", OCID, nullable=False),
    Column("compartment_id", OCID, nullable=False),
    Column("display_name", String(255), nullable=False),
    Column("schedules", JSON, nullable=False),  # [Schedule.to_json()]
    Column("destination_region", String(64), nullable=True),
    Column("time_created", UtcDateTime, nullable=False),
    Column("etag", String(64), nullable=False),
    Column("freeform_tags", JSON, nullable=False),
    Column("defined_tags", JSON, nullable=False),
    Index("ix_policies_compartment", "tenancy_id", "compartment_id"),
)

# One row per boot volume with a policy (asset_id is unique: a new assignment replaces the old).
# next_run_at is the scheduler's cursor: the earliest due time not yet handled.
volume_backup_policy_assignments = Table(
    "volume_backup_policy_assignments",
    metadata,
    Column("id", OCID, primary_key=True),
    Column("tenancy_id", OCID, nullable=False),
    Column("asset_id", OCID, nullable=False, unique=True),
    Column("policy_id", OCID, nullable=False, index=True),
    Column("time_created", UtcDateTime, nullable=False),
    Column("etag", String(64), nullable=False),
    Column("xrc_kms_key_id", OCID, nullable=True),
    Column("next_run_at", UtcDateTime, nullable=True, index=True),
)

# One row per (volume, due time) the scheduler handled, written in the transaction that queued the
# backup: the unique key makes a second backup for the same due time impossible, whatever runs
# the scheduler. backup_id is NULL when nothing was made (the reason says why). Pruned after days.
scheduled_runs = Table(
    "scheduled_runs",
    metadata,
    Column("asset_id", OCID, primary_key=True),
    Column("due_time", UtcDateTime, primary_key=True),
    Column("assignment_id", OCID, nullable=False),
    Column("policy_id", OCID, nullable=False),
    Column("period", String(16), nullable=False),
    Column("backup_id", OCID, nullable=True),
    Column("skipped_reason", Text, nullable=True),
    Column("time_queued", UtcDateTime, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("tenancy_id", OCID, nullable=False),
    Column("resource_id", OCID, nullable=False, index=True),
    Column("lane", String(255), nullable=False),
    # Jobs that touch a volume pool run only on workers that reach that AD's pool (NULL: any).
    Column("availability_domain", String(255), nullable=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
    Column("time_started", UtcDateTime, nullable=True),  # the current claim's start
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("result", Text, nullable=True),  # what a maintenance job found, for operators
    Index("ix_jobs_state_lane", "state", "lane"),
)

retry_tokens = Table(
    "retry_tokens",
    metadata,
    Column("tenancy_id", OCID, nullable=False),
    Column("token", String(64), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("resource_id", OCID, nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
    UniqueConstraint("tenancy_id", "token", name="uq_retry_token"),
)

gc_condemned = Table(
    "gc_condemned",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("pack_id", String(64), primary_key=True),
    Column("time_condemned", UtcDateTime, nullable=False),
)

# Cross-region copy (docs/regions.md). A peer region this one is paired with: its endpoint, the
# CA its certificate chains to (None: the system's), and the pairing secret both share, wrapped
# under a key derived from the master key. Region-to-region calls are signed with a key derived
# from that secret, which only the region protocol accepts.
region_peers = Table(
    "region_peers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("endpoint", Text, nullable=False),
    Column("ca_pem", Text, nullable=True),
    Column("secret_wrapped", LargeBinary, nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
)

# One-time invites: only the sha256 of the code is kept; joining deletes the row.
region_invites = Table(
    "region_invites",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
)

# In a destination region: which of its own blocks (scope, block id) holds the block a peer names
# by transfer id. Written only after the pack holding the block is whole (with its index object).
xrc_blocks = Table(
    "xrc_blocks",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("transfer_id", String(64), primary_key=True),
    Column("block_id", String(64), nullable=False),
)

# OCI work requests. A copy's work request exists in both regions under one id: the source's row
# is written by its COPY job, the destination's by the region protocol calls of that job.
work_requests = Table(
    "work_requests",
    metadata,
    Column("id", OCID, primary_key=True),
    Column("tenancy_id", OCID, nullable=False),
    Column("compartment_id", OCID, nullable=False),
    Column("operation_type", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("percent_complete", Float, nullable=False),
    Column("time_accepted", UtcDateTime, nullable=False),
    Column("time_started", UtcDateTime, nullable=True),
    Column("time_finished", UtcDateTime, nullable=True),
    Column("time_updated", UtcDateTime, nullable=False),  # last progress: the stall watchdog reads it
    Column("resources", JSON, nullable=False),
    Column("errors", JSON, nullable=False),
    Column("logs", JSON, nullable=False),
    Column("source_region", String(64), nullable=True),
    Column("destination_region", String(64), nullable=True),
    Column("source_id", OCID, nullable=True),
    Column("target_id", OCID, nullable=True, index=True),
    Column("kms_key_id", OCID, nullable=True),
    Column("display_name", String(255), nullable=True),
    Index("ix_work_requests_compartment", "tenancy_id", "compartment_id", "time_accepted", "id"),
)

# The operator console (migration 0010). A console user is a row of `users` with a password;
# names are unique across tenancies (the sign-in form asks only a name). A session is stored by
# the SHA-256 of its cookie's token, so the table never holds a usable session id.
console_credentials = Table(
    "console_credentials",
    metadata,
    Column("user_id", OCID, primary_key=True),
    Column("tenancy_id", OCID, nullable=False),
    Column("name", String(255), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", OCID, nullable=False, index=True),
    Column("tenancy_id", OCID, nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("time_created", UtcDateTime, nullable=False),
    Column("time_last_seen", UtcDateTime, nullable=False),
)

# Failed sign-ins per subject ("user:<name>" or "addr:<ip>") in the current window.
console_sign_in_failures = Table(
    "console_sign_in_failures",
    metadata,
    Column("subject", String(300), primary_key=True),
    Column("window_start", UtcDateTime, nullable=False),
    Column("failures", Integer, nullable=False),
)
