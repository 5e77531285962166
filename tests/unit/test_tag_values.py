"""Every tag value bootvault sends is a string, as in OCI: freeformTags map keys to strings,
definedTags and systemTags map namespaces to maps of strings. Terraform's OCI provider keeps
system_tags as a map of strings and fails to save its state on anything else (a number under
systemTags.bootvault.hydrationProgress did exactly that).

The walk renders every model the API serves, in every lifecycle state, with every optional field
that feeds a tag both unset and set (hydrating, attached, FAULTY with a reason, exact sizes), as
the API renders it (the cached JSON bytes, parsed back)."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from bootvault.api import shapes
from bootvault.domain.models import (
    BackupState,
    BackupType,
    BootVolume,
    BootVolumeBackup,
    SourceType,
    Tags,
    VolumeSource,
    VolumeState,
)
from bootvault.domain.policies import (
    ORACLE_POLICIES,
    Period,
    PolicyAssignment,
    Schedule,
    VolumeBackupPolicy,
)

NOW = datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC)
USER_TAGS = Tags(freeform={"team": "storage", "n": "42"}, defined={"Ops": {"CostCenter": "0042"}})


def non_string_tag_values(wire: dict[str, Any]) -> list[str]:
    """Where a tag map of a rendered model holds anything but a string: `key.path (type)`."""
    bad: list[str] = []
    for field, value in wire.items():
        if not field.endswith("Tags") or value is None:
            continue
        if field == "freeformTags":
            leaves = dict(value)
        else:  # definedTags, systemTags: namespace -> key -> value
            leaves = {}
            for namespace, keys in value.items():
                if not isinstance(keys, dict):
                    bad.append(f"{field}.{namespace} ({type(keys).__name__})")
                    continue
                leaves.update({f"{namespace}.{k}": v for k, v in keys.items()})
        bad += [f"{field}.{k} ({type(v).__name__})" for k, v in leaves.items() if not isinstance(v, str)]
    return bad


def _as_sent(render: Any, obj: Any) -> dict[str, Any]:
    """The model as the API sends it: its JSON bytes, parsed back."""
    return json.loads(orjson.dumps(render(obj)))  # a Fragment is written as its bytes


def _volumes() -> list[BootVolume]:
    base = BootVolume(
        id="ocid1.bootvolume.oc1..v",
        tenancy_id="ocid1.tenancy.oc1..t",
        compartment_id="ocid1.tenancy.oc1..t",
        availability_domain="bootvault:AD-1",
        display_name="v",
        lifecycle_state=VolumeState.AVAILABLE,
        size_in_gbs=50,
        time_created=NOW,
        etag="e",
        tags=USER_TAGS,
        source_type=VolumeSource.BACKUP,
        source_id="ocid1.bootvolumebackup.oc1..b",
    )
    found = []
    options = itertools.product(
        VolumeState,
        (True, False),  # is_hydrated
        (None, 0, 57, 100),  # hydration_percent
        (None, "nbd+unix:///disk?socket=/run/x/nbd.sock"),  # attachment_uri
        (None, NOW),  # time_attached (a record written before the daemon started has none yet)
        (None, "Hydration failed 6 times; the backup could not be read"),  # lifecycle_details
    )
    for n, (state, hydrated, percent, uri, attached_at, details) in enumerate(options):
        found.append(
            replace(
                base,
                etag=f"e{n}",
                lifecycle_state=state,
                is_hydrated=hydrated,
                hydration_percent=percent,
                attachment_uri=uri,
                time_attached=attached_at,
                lifecycle_details=details,
            )
        )
    return found


def _backups() -> list[BootVolumeBackup]:
    base = BootVolumeBackup(
        id="ocid1.bootvolumebackup.oc1..b",
        tenancy_id="ocid1.tenancy.oc1..t",
        compartment_id="ocid1.tenancy.oc1..t",
        boot_volume_id="ocid1.bootvolume.oc1..v",
        display_name="b",
        lifecycle_state=BackupState.AVAILABLE,
        type=BackupType.FULL,
        source_type=SourceType.MANUAL,
        time_request_received=NOW,
        time_created=NOW,
        etag="e",
        tags=USER_TAGS,
    )
    found = []
    options = itertools.product(
        BackupState,
        SourceType,
        (None, 0, 123456789),  # unique_size_bytes
        (None, 1 << 30),  # logical_size_bytes
        (None, "Stored data failed authentication"),  # lifecycle_details
        (0, 37, 100),  # percent_complete
    )
    for n, (state, source, unique, logical, details, percent) in enumerate(options):
        found.append(
            replace(
                base,
                etag=f"e{n}",
                lifecycle_state=state,
                source_type=source,
                unique_size_bytes=unique,
                logical_size_bytes=logical,
                lifecycle_details=details,
                percent_complete=percent,
            )
        )
    return found


def _policies() -> list[VolumeBackupPolicy]:
    schedule = Schedule(BackupType.INCREMENTAL, Period.ONE_DAY, 7 * 86400)
    own = VolumeBackupPolicy(
        id="ocid1.volumebackuppolicy.oc1..p",
        display_name="p",
        schedules=[schedule],
        time_created=NOW,
        etag="e",
        tenancy_id="ocid1.tenancy.oc1..t",
        compartment_id="ocid1.tenancy.oc1..t",
        tags=USER_TAGS,
    )
    return [own, replace(own, tags=Tags()), *ORACLE_POLICIES.values()]


MODELS = [
    *[(f"volume {v.lifecycle_state} #{v.etag}", shapes.volume_json, v) for v in _volumes()],
    *[(f"backup {b.lifecycle_state} #{b.etag}", shapes.backup_json, b) for b in _backups()],
    *[(f"policy {p.display_name}", shapes.policy_to_wire, p) for p in _policies()],
    (
        "assignment",
        shapes.assignment_to_wire,
        PolicyAssignment("ocid1.volumebackuppolicyassignment.oc1..a", "t", "v", "p", NOW, "e"),
    ),
]


def test_every_rendered_tag_value_is_a_string() -> None:
    failures = []
    for name, render, obj in MODELS:
        bad = non_string_tag_values(_as_sent(render, obj))
        if bad:
            failures.append(f"{name}: {', '.join(bad)}")
    assert not failures, "\n".join(failures[:20])


def test_the_walk_covers_the_tags_that_carry_numbers() -> None:
    """The walk is not vacuous: it reaches hydrationProgress and the exact sizes, and would
    catch a number there."""
    hydrating = next(
        v for v in _volumes() if not v.is_hydrated and v.hydration_percent == 0 and v.attachment_uri
    )
    sent = _as_sent(shapes.volume_json, hydrating)
    assert sent["systemTags"]["bootvault"]["hydrationProgress"] == "0"
    assert sent["systemTags"]["bootvault"]["attachment"].startswith("nbd+unix://")
    faulty = next(b for b in _backups() if b.unique_size_bytes and b.lifecycle_details)
    sent = _as_sent(shapes.backup_json, faulty)
    assert sent["systemTags"]["bootvault"]["uniqueSizeBytes"] == "123456789"
    numeric = {"systemTags": {"bootvault": {"hydrationProgress": 0}}, "freeformTags": {"a": 1}}
    assert non_string_tag_values(numeric) == [
        "systemTags.bootvault.hydrationProgress (int)",
        "freeformTags.a (int)",
    ]
