"""OCI JSON shapes: request bodies in, resources out. The only module that knows field names."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bootvault.api.errors import WireError
from bootvault.domain.errors import InvalidArgument, MissingArgument
from bootvault.domain.models import BootVolume, BootVolumeBackup

M = TypeVar("M", bound=BaseModel)
Tags = dict[str, Any]


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=False, extra="ignore", strict=True)


class CreateBootVolumeBackupDetails(_Body):
    boot_volume_id: str = Field(alias="bootVolumeId", min_length=1, max_length=255)
    display_name: str | None = Field(None, alias="displayName")
    type: Literal["FULL", "INCREMENTAL"] = "INCREMENTAL"
    kms_key_id: str | None = Field(None, alias="kmsKeyId", min_length=1, max_length=255)
    freeform_tags: Tags | None = Field(None, alias="freeformTags")
    defined_tags: Tags | None = Field(None, alias="definedTags")


class UpdateBootVolumeBackupDetails(_Body):
    display_name: str | None = Field(None, alias="displayName")
    kms_key_id: str | None = Field(None, alias="kmsKeyId", min_length=1, max_length=255)
    freeform_tags: Tags | None = Field(None, alias="freeformTags")
    defined_tags: Tags | None = Field(None, alias="definedTags")


class ChangeCompartmentDetails(_Body):
    compartment_id: str = Field(alias="compartmentId", min_length=1, max_length=255)


class SourceDetails(_Body):
    type: Literal["bootVolumeBackup", "bootVolume"]
    id: str = Field(min_length=1, max_length=255)


class CreateBootVolumeDetails(_Body):
    compartment_id: str = Field(alias="compartmentId", min_length=1, max_length=255)
    source_details: SourceDetails = Field(alias="sourceDetails")
    availability_domain: str | None = Field(None, alias="availabilityDomain")
    display_name: str | None = Field(None, alias="displayName")
    size_in_gbs: int | None = Field(None, alias="sizeInGBs")
    kms_key_id: str | None = Field(None, alias="kmsKeyId", min_length=1, max_length=255)
    vpus_per_gb: int | None = Field(None, alias="vpusPerGB", ge=0, le=120)
    freeform_tags: Tags | None = Field(None, alias="freeformTags")
    defined_tags: Tags | None = Field(None, alias="definedTags")

    @field_validator("source_details", mode="before")
    @classmethod
    def _known_source(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("type") not in (None, "bootVolumeBackup", "bootVolume"):
            raise ValueError("only bootVolumeBackup and bootVolume sources are supported")
        return value


class UpdateBootVolumeDetails(_Body):
    display_name: str | None = Field(None, alias="displayName")
    size_in_gbs: int | None = Field(None, alias="sizeInGBs")
    vpus_per_gb: int | None = Field(None, alias="vpusPerGB", ge=0, le=120)
    freeform_tags: Tags | None = Field(None, alias="freeformTags")
    defined_tags: Tags | None = Field(None, alias="definedTags")


def _field_path(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The wire name of the offending field, e.g. sourceDetails.id."""
    names: list[str] = []
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None or not hasattr(current, "model_fields"):
            names.append(str(part))
            current = None
            continue
        info = current.model_fields.get(part)
        names.append(info.alias if info is not None and info.alias else str(part))
        annotation = info.annotation if info is not None else None
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return ".".join(names)


MAX_DEPTH = 32  # deeper JSON is no request of ours (tags nest two levels)


def clean_text(value: str, field: str) -> str:
    """Text we can store and send back: valid Unicode (no lone surrogates) and no NUL."""
    if "\x00" in value:
        raise InvalidArgument(f"Invalid value for {field}: NUL characters are not allowed.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"Invalid value for {field}: not valid Unicode text.") from None
    return value


def _check_strings(data: Any, path: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise WireError(400, "CannotParseRequest", f"The request body nests deeper than {MAX_DEPTH} levels.")
    if isinstance(data, str):
        clean_text(data, path or "body")
    elif isinstance(data, dict):
        for key, value in data.items():
            clean_text(key, f"{path}.{key}" if path else "a key")
            _check_strings(value, f"{path}.{key}" if path else key, depth + 1)
    elif isinstance(data, list):
        for n, value in enumerate(data):
            _check_strings(value, f"{path}[{n}]", depth + 1)


def parse_body(model: type[M], raw: bytes) -> M:
    """Decode and validate a JSON body; errors name the wire field."""
    try:
        data = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WireError(400, "CannotParseRequest", f"The request body is not valid JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # integers past 4300 digits, absurd nesting
        raise WireError(400, "CannotParseRequest", f"The request body cannot be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise WireError(400, "CannotParseRequest", "The request body must be a JSON object.")
    _check_strings(data, "")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(model, tuple(err["loc"]))
        if err["type"] == "missing":
            raise MissingArgument(f"Missing required field: {field}.") from exc
        raise InvalidArgument(f"Invalid value for {field}: {err['msg']}.") from exc


def rfc3339(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def backup_to_wire(b: BootVolumeBackup) -> dict[str, Any]:
    system: dict[str, Any] = {}
    if b.unique_size_bytes is not None:
        system["uniqueSizeBytes"] = str(b.unique_size_bytes)
    if b.logical_size_bytes is not None:
        system["logicalSizeBytes"] = str(b.logical_size_bytes)
    if b.lifecycle_details:
        system["lifecycleDetails"] = b.lifecycle_details
    body: dict[str, Any] = {
        "id": b.id,
        "compartmentId": b.compartment_id,
        "bootVolumeId": b.boot_volume_id,
        "displayName": b.display_name,
        "lifecycleState": b.lifecycle_state.value,
        "type": b.type.value,
        "sourceType": b.source_type.value,
        "timeCreated": rfc3339(b.time_created),
        "timeRequestReceived": rfc3339(b.time_request_received),
        "sizeInGBs": b.size_in_gbs,
        "uniqueSizeInGBs": b.unique_size_in_gbs,
        "percentComplete": b.percent_complete,
        "kmsKeyId": b.kms_key_id,
        "imageId": b.image_id,
        "freeformTags": b.tags.freeform,
        "definedTags": b.tags.defined,
        "systemTags": {"bootvault": system} if system else {},
        "sourceBootVolumeBackupId": b.source_boot_volume_backup_id,
        "expirationTime": rfc3339(b.expiration_time),
        "lifecycleDetails": b.lifecycle_details,
    }
    return {k: v for k, v in body.items() if v is not None}


def _volume_system_tags(v: BootVolume) -> dict[str, Any]:
    """bootvault's own facts: why a volume is FAULTY, and where it is served while attached."""
    system: dict[str, Any] = {}
    if v.lifecycle_details:
        system["lifecycleDetails"] = v.lifecycle_details
    if v.attachment_uri:
        system["attachment"] = v.attachment_uri
        system["timeAttached"] = rfc3339(v.time_attached) if v.time_attached else None
    return {"bootvault": system} if system else {}


def volume_to_wire(v: BootVolume) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": v.id,
        "compartmentId": v.compartment_id,
        "availabilityDomain": v.availability_domain,
        "displayName": v.display_name,
        "lifecycleState": v.lifecycle_state.value,
        "sizeInGBs": v.size_in_gbs,
        "sizeInMBs": v.size_in_gbs * 1024,
        "timeCreated": rfc3339(v.time_created),
        "freeformTags": v.tags.freeform,
        "definedTags": v.tags.defined,
        "systemTags": _volume_system_tags(v),
        "kmsKeyId": v.kms_key_id,
        "vpusPerGB": v.vpus_per_gb,
        "isHydrated": v.is_hydrated,
        "imageId": v.image_id,
        "sourceDetails": {"type": v.source_type.value, "id": v.source_id} if v.source_type else None,
        "lifecycleDetails": v.lifecycle_details,
    }
    return {k: val for k, val in body.items() if val is not None}
