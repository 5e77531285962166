"""How each resource is written to the wire: the one place that lists a model's fields.

Every field of OCI's model is sent, in the SDK model's order, `null` when unset, as real OCI
does (raw-JSON consumers and Terraform state rely on the keys). A field added to a model here is
added everywhere the model is sent; a field missing here is caught by the tests that compare
these lists with the SDK's models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from bootvault.domain.models import BootVolume, BootVolumeBackup
from bootvault.domain.policies import PolicyAssignment, Schedule, VolumeBackupPolicy
from bootvault.domain.retention import RetentionDuration

Field = tuple[str, Callable[[Any], Any]]


def rfc3339(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _none(_: Any) -> None:
    return None


def _backup_system_tags(b: BootVolumeBackup) -> dict[str, dict[str, str]]:
    """bootvault's own facts about a backup (exact sizes, why it is FAULTY). Tag values are
    strings, as in OCI: Terraform's provider refuses a number in its map of strings."""
    system: dict[str, str] = {}
    if b.unique_size_bytes is not None:
        system["uniqueSizeBytes"] = str(b.unique_size_bytes)
    if b.logical_size_bytes is not None:
        system["logicalSizeBytes"] = str(b.logical_size_bytes)
    if b.lifecycle_details:
        system["lifecycleDetails"] = b.lifecycle_details
    return {"bootvault": system} if system else {}


def _volume_system_tags(v: BootVolume) -> dict[str, dict[str, str]]:
    """bootvault's own facts about a volume: why it is FAULTY, where it is served, how much of
    it is copied. Every value a string (see _backup_system_tags)."""
    system: dict[str, str] = {}
    if v.lifecycle_details:
        system["lifecycleDetails"] = v.lifecycle_details
    if v.attachment_uri:
        system["attachment"] = v.attachment_uri
        if v.time_attached is not None:
            system["timeAttached"] = rfc3339(v.time_attached) or ""
    if not v.is_hydrated and v.hydration_percent is not None:
        system["hydrationProgress"] = str(v.hydration_percent)
    return {"bootvault": system} if system else {}


def _duration(d: RetentionDuration | None) -> dict[str, Any] | None:
    return None if d is None else {"retentionTimeUnit": d.unit, "retentionTimeAmount": d.amount}


BOOT_VOLUME_BACKUP: list[Field] = [
    ("bootVolumeId", lambda b: b.boot_volume_id),
    ("compartmentId", lambda b: b.compartment_id),
    ("definedTags", lambda b: b.tags.defined),
    ("systemTags", _backup_system_tags),
    ("displayName", lambda b: b.display_name),
    ("expirationTime", lambda b: rfc3339(b.expiration_time)),
    ("freeformTags", lambda b: b.tags.freeform),
    ("id", lambda b: b.id),
    ("imageId", lambda b: b.image_id),
    ("kmsKeyId", lambda b: b.kms_key_id),
    ("lifecycleState", lambda b: b.lifecycle_state.value),
    ("sizeInGBs", lambda b: b.size_in_gbs),
    ("sourceBootVolumeBackupId", lambda b: b.source_boot_volume_backup_id),
    ("sourceType", lambda b: b.source_type.value),
    ("timeCreated", lambda b: rfc3339(b.time_imaged)),  # null until the image is taken
    ("timeRequestReceived", lambda b: rfc3339(b.time_request_received)),
    ("type", lambda b: b.type.value),
    ("uniqueSizeInGBs", lambda b: b.unique_size_in_gbs or 0),  # 0 until known, as OCI
    ("timeRetentionExpiresAt", lambda b: rfc3339(b.retention.expires_at)),
    ("retentionPeriod", lambda b: _duration(b.retention.period)),
    ("isPreventDeletionEnabled", lambda b: b.retention.prevent_deletion),
    ("isRetentionLockEnabled", lambda b: b.retention.lock),
    ("isIndefiniteRetentionEnabled", lambda b: b.retention.legal_hold),
    ("volumeGroupBackupId", _none),
    ("backupProgress", lambda b: b.percent_complete),  # the Private Cloud Appliance edition's field
]

BOOT_VOLUME: list[Field] = [
    ("availabilityDomain", lambda v: v.availability_domain),
    ("compartmentId", lambda v: v.compartment_id),
    ("definedTags", lambda v: v.tags.defined),
    ("systemTags", _volume_system_tags),
    ("displayName", lambda v: v.display_name),
    ("freeformTags", lambda v: v.tags.freeform),
    ("id", lambda v: v.id),
    ("imageId", lambda v: v.image_id),
    ("isHydrated", lambda v: v.is_hydrated),
    ("clusterPlacementGroupId", _none),
    ("vpusPerGB", lambda v: v.vpus_per_gb),
    ("lifecycleState", lambda v: v.lifecycle_state.value),
    ("sizeInGBs", lambda v: v.size_in_gbs),
    ("sizeInMBs", lambda v: v.size_in_gbs * 1024),
    ("sourceDetails", lambda v: {"type": v.source_type.value, "id": v.source_id} if v.source_type else None),
    ("timeCreated", lambda v: rfc3339(v.time_created)),
    ("volumeGroupId", _none),
    ("kmsKeyId", lambda v: v.kms_key_id),
    ("isAutoTuneEnabled", lambda v: False),
    ("autoTunedVpusPerGB", _none),
    ("bootVolumeReplicas", _none),
    ("autotunePolicies", _none),
]


VOLUME_BACKUP_SCHEDULE: list[Field] = [
    ("backupType", lambda s: s.backup_type.value),
    ("offsetSeconds", lambda s: s.offset_seconds),
    ("period", lambda s: s.period.value),
    ("offsetType", lambda s: s.offset_type),
    ("hourOfDay", lambda s: s.hour_of_day),
    ("dayOfWeek", lambda s: s.day_of_week),
    ("dayOfMonth", lambda s: s.day_of_month),
    ("month", lambda s: s.month),
    ("retentionSeconds", lambda s: s.retention_seconds),
    ("timeZone", lambda s: s.time_zone),
    ("retentionPeriod", lambda s: _duration(s.retention_period)),
    ("isPreventDeletionEnabled", lambda s: s.is_prevent_deletion_enabled),
    ("isRetentionLockEnabled", lambda s: s.is_retention_lock_enabled),
]

VOLUME_BACKUP_POLICY: list[Field] = [
    ("displayName", lambda p: p.display_name),
    ("id", lambda p: p.id),
    ("schedules", lambda p: [schedule_to_wire(s) for s in p.schedules]),
    ("destinationRegion", lambda p: p.destination_region),
    ("timeCreated", lambda p: rfc3339(p.time_created)),
    ("compartmentId", lambda p: p.compartment_id),  # null for Oracle-defined policies
    ("definedTags", lambda p: p.tags.defined),
    ("freeformTags", lambda p: p.tags.freeform),
]

VOLUME_BACKUP_POLICY_ASSIGNMENT: list[Field] = [
    ("assetId", lambda x: x.asset_id),
    ("id", lambda x: x.id),
    ("policyId", lambda x: x.policy_id),
    ("timeCreated", lambda x: rfc3339(x.time_created)),
    ("xrcKmsKeyId", lambda x: x.xrc_kms_key_id),
]


def to_wire(fields: list[Field], obj: Any) -> dict[str, Any]:
    return {name: get(obj) for name, get in fields}


def backup_to_wire(b: BootVolumeBackup) -> dict[str, Any]:
    return to_wire(BOOT_VOLUME_BACKUP, b)


def volume_to_wire(v: BootVolume) -> dict[str, Any]:
    return to_wire(BOOT_VOLUME, v)


def to_json(content: Any) -> bytes:
    """JSON as Starlette's json.dumps(ensure_ascii=False, separators=(",", ":")) writes it, by
    orjson (about 15 times faster); what orjson refuses (an integer past 64 bits) goes through
    json."""
    try:
        return orjson.dumps(content)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


# The rendered JSON of a backup or volume, by (id, etag): a client polling one resource, or paging
# through a list, gets the same bytes without building them again. Every change to a row mints a
# new etag (store/common.py: update_with_etag is the only way rows change), so an entry is never
# stale; a deleted resource is never looked up.
_RENDERED: dict[tuple[str, str], orjson.Fragment] = {}
RENDERED_MAX = 4096


def _rendered(fields: list[Field], obj: Any) -> orjson.Fragment:
    key = (obj.id, obj.etag)
    found = _RENDERED.get(key)
    if found is None:
        if len(_RENDERED) >= RENDERED_MAX:
            _RENDERED.clear()
        found = _RENDERED[key] = orjson.Fragment(to_json(to_wire(fields, obj)))
    return found


def backup_json(b: BootVolumeBackup) -> orjson.Fragment:
    return _rendered(BOOT_VOLUME_BACKUP, b)


def volume_json(v: BootVolume) -> orjson.Fragment:
    return _rendered(BOOT_VOLUME, v)


def schedule_to_wire(s: Schedule) -> dict[str, Any]:
    return to_wire(VOLUME_BACKUP_SCHEDULE, s)


def policy_to_wire(p: VolumeBackupPolicy) -> dict[str, Any]:
    return to_wire(VOLUME_BACKUP_POLICY, p)


def assignment_to_wire(x: PolicyAssignment) -> dict[str, Any]:
    return to_wire(VOLUME_BACKUP_POLICY_ASSIGNMENT, x)
