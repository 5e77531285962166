"""OCI JSON shapes: request bodies in, resources out. The only module that knows field names."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bootvault.api.errors import WireError, printable
from bootvault.domain.errors import InvalidArgument, MissingArgument

M = TypeVar("M", bound=BaseModel)
Tags = dict[str, Any]


class _Body(BaseModel):
    """A request body. Unknown fields are refused by name (extra="forbid"); OCI fields this
    service does not implement are listed in UNSUPPORTED with the one value that means what we
    do anyway (e.g. false), and refused by name with any other value: never silently dropped."""

    model_config = ConfigDict(populate_by_name=False, extra="forbid", strict=True)
    UNSUPPORTED: ClassVar[dict[str, Any]] = {}


_RETENTION = {
    "retentionPeriod": None,
    "isPreventDeletionEnabled": False,
    "isRetentionLockEnabled": False,
    "isIndefiniteRetentionEnabled": False,
}


class CreateBootVolumeBackupDetails(_Body):
    UNSUPPORTED: ClassVar[dict[str, Any]] = _RETENTION
    boot_volume_id: str = Field(alias="bootVolumeId", min_length=1, max_length=255)
    display_name: str | None = Field(None, alias="displayName")
    type: Literal["FULL", "INCREMENTAL"] = "INCREMENTAL"
    kms_key_id: str | None = Field(None, alias="kmsKeyId", min_length=1, max_length=255)
    freeform_tags: Tags | None = Field(None, alias="freeformTags")
    defined_tags: Tags | None = Field(None, alias="definedTags")


class UpdateBootVolumeBackupDetails(_Body):
    UNSUPPORTED: ClassVar[dict[str, Any]] = _RETENTION
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
    UNSUPPORTED: ClassVar[dict[str, Any]] = {
        "backupPolicyId": None,
        "clusterPlacementGroupId": None,
        "isAutoTuneEnabled": False,
        "bootVolumeReplicas": [],
        "autotunePolicies": [],
        "xrcKmsKeyId": None,
    }
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
    UNSUPPORTED: ClassVar[dict[str, Any]] = {
        "isAutoTuneEnabled": False,
        "bootVolumeReplicas": [],
        "autotunePolicies": [],
    }
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
            name = printable(key)  # the key itself may be what is wrong
            clean_text(key, f"{path}.{name}" if path else "a key")
            _check_strings(value, f"{path}.{name}" if path else name, depth + 1)
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
    for name, harmless in model.UNSUPPORTED.items():
        if name in data:
            value = data.pop(name)
            if value is not None and value != harmless:
                raise InvalidArgument(f"{name} is not supported by this service; remove it from the request.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(model, tuple(err["loc"]))
        if err["type"] == "missing":
            raise MissingArgument(f"Missing required field: {field}.") from exc
        if err["type"] == "extra_forbidden":
            raise InvalidArgument(f"{field} is not a field of {model.__name__}.") from exc
        raise InvalidArgument(f"Invalid value for {field}: {err['msg']}.") from exc
