"""Domain records and lifecycle rules. Pure Python: no I/O, no wire names."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bootvault.domain.retention import Retention

GIB = 1 << 30


class BackupState(enum.StrEnum):
    REQUEST_RECEIVED = "REQUEST_RECEIVED"
    CREATING = "CREATING"
    AVAILABLE = "AVAILABLE"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    FAULTY = "FAULTY"


class BackupType(enum.StrEnum):
    FULL = "FULL"
    INCREMENTAL = "INCREMENTAL"


class SourceType(enum.StrEnum):
    MANUAL = "MANUAL"
    SCHEDULED = "SCHEDULED"


class VolumeState(enum.StrEnum):
    PROVISIONING = "PROVISIONING"
    RESTORING = "RESTORING"
    AVAILABLE = "AVAILABLE"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    FAULTY = "FAULTY"


class VolumeSource(enum.StrEnum):
    BACKUP = "bootVolumeBackup"
    VOLUME = "bootVolume"


class JobKind(enum.StrEnum):
    BACKUP = "BACKUP"
    RESTORE = "RESTORE"
    CLONE = "CLONE"
    DELETE_BACKUP = "DELETE_BACKUP"
    DELETE_VOLUME = "DELETE_VOLUME"
    RESIZE = "RESIZE"
    HYDRATE = "HYDRATE"
    GC = "GC"
    VERIFY = "VERIFY"
    RETAIN = "RETAIN"  # give a locked backup's objects an object-store retention date
    COPY = "COPY"  # send a backup to a region (service/copy.py); its resource is the work request
    IDENTITY_SYNC = "IDENTITY_SYNC"  # push tenancies, users, keys, compartments to a peer region


class JobState(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass
class Tags:
    freeform: dict[str, str] = field(default_factory=dict)
    defined: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Compartment:
    id: str
    tenancy_id: str
    parent_id: str | None
    name: str
    time_created: datetime


@dataclass
class ApiKey:
    tenancy_id: str
    user_id: str
    fingerprint: str
    public_key_pem: str


@dataclass
class BootVolume:
    id: str
    tenancy_id: str
    compartment_id: str
    availability_domain: str
    display_name: str
    lifecycle_state: VolumeState
    size_in_gbs: int
    time_created: datetime
    etag: str
    tags: Tags = field(default_factory=Tags)
    source_type: VolumeSource | None = None
    source_id: str | None = None
    kms_key_id: str | None = None
    vpus_per_gb: int = 10
    is_hydrated: bool = True
    image_id: str | None = None
    lifecycle_details: str | None = None
    attachment_uri: str | None = None  # where the volume is served (NBD), while attached
    hydration_percent: int | None = None  # copied from its source backup, while not hydrated
    time_attached: datetime | None = None
    xrc_kms_key_id: str | None = None  # a destination-region key for its policy's copies

    @property
    def size_bytes(self) -> int:
        return self.size_in_gbs * GIB


@dataclass(frozen=True)
class BootVolumeBackup:
    id: str
    tenancy_id: str
    compartment_id: str
    boot_volume_id: str
    display_name: str
    lifecycle_state: BackupState
    type: BackupType
    source_type: SourceType
    time_request_received: datetime
    time_created: datetime  # when it was created: orders lists, never changes
    etag: str
    time_imaged: datetime | None = None  # the instant of the point-in-time image (OCI's timeCreated)
    size_in_gbs: int | None = None
    kms_key_id: str | None = None
    image_id: str | None = None
    tags: Tags = field(default_factory=Tags)
    percent_complete: int = 0
    logical_size_bytes: int | None = None
    unique_size_bytes: int | None = None
    lifecycle_details: str | None = None
    source_boot_volume_backup_id: str | None = None
    expiration_time: datetime | None = None  # scheduled backups: the image's instant + retention
    retention: Retention = field(default_factory=Retention)  # lock, deletion prevention, legal hold
    schedule_retention_seconds: int | None = None  # scheduled backups: sets expiration_time

    @property
    def unique_size_in_gbs(self) -> int | None:
        """Storage this backup added, rounded up to whole GB as OCI reports it."""
        if self.unique_size_bytes is None:
            return None
        return -(-self.unique_size_bytes // GIB)


@dataclass
class Job:
    id: str
    kind: JobKind
    tenancy_id: str
    resource_id: str
    lane: str  # jobs in one lane (e.g. backups of one volume) run one at a time, oldest first
    state: JobState
    attempts: int
    time_created: datetime
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    last_error: str | None = None
    result: str | None = None


@dataclass
class WorkRequest:
    """A work request as every region stores it (ListWorkRequests, GetWorkRequest)."""

    id: str
    tenancy_id: str
    compartment_id: str
    operation_type: str
    status: str
    percent_complete: float
    time_accepted: datetime
    time_started: datetime | None = None
    time_finished: datetime | None = None
    time_updated: datetime | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    source_region: str | None = None
    destination_region: str | None = None
    source_id: str | None = None
    target_id: str | None = None
    kms_key_id: str | None = None
    display_name: str | None = None
