"""OCI JSON shapes: request bodies in, resources out. The only module that knows field names."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bootvault.api.errors import WireError, printable
from bootvault.domain.errors import InvalidArgument, MissingArgument
from bootvault.domain.policies import DAYS_OF_WEEK, MONTHS
from bootvault.domain.retention import RetentionDuration

M = TypeVar("M", bound="_Body")
Tags = dict[str, Any]


class _Body(BaseModel):
    """A request body. Unknown fields are refused by name (extra="forbid"); OCI fields this
    service does not implement are listed in UNSUPPORTED with the one value that means what we
    do anyway (e.g. false), and refused by name with any other value: never silently dropped."""

    model_config = ConfigDict(populate_by_name=False, extra="forbid", strict=True)
    UNSUPPORTED: ClassVar[dict[str, Any]] = {}


class RetentionDurationDetails(_Body):
    """Whole DAYS or YEARS (a fractional amount is not an integer: 400 naming the field)."""

    retention_time_unit: Literal["DAYS", "YEARS"] = Field(alias="retentionTimeUnit")
    retention_time_amount: int = Field(alias="retentionTimeAmount", ge=1)


def duration(d: RetentionDurationDetails | None) -> RetentionDuration | None:
    return None if d is None else RetentionDuration(d.retention_time_unit, d.retention_time_amount)


class _RetentionFields(_Body):
    retention_period: RetentionDurationDetails | None = Field(None, alias="retentionPeriod")
    is_prevent_deletion_enabled: bool | None = Field(None, alias="isPreventDeletionEnabled")
    is_retention_lock_enabled: bool | None = Field(None, alias="isRetentionLockEnabled")
    is_indefinite_retention_enabled: bool | None = Field(None, alias="isIndefiniteRetentionEnabled")


class CreateBootVolumeBackupDetails(_RetentionFields):
    boot_volume_id: str = Field(alias="bootVolumeId", min_length=1, max_length=255)
    display_name: str | None = Field(None, alias="displayName")
    type: Literal["FULL", "INCREMENTAL"] = "INCREMENTAL"
    kms_key_id: str | None = Field(None, alias="kmsKeyId", min_length=1, max_length=255)
    freeform_tags: Tags | None = Field(None, alias="freeformTags")
    defined_tags: Tags | None = Field(None, alias="definedTags")


class UpdateBootVolumeBackupDetails(_RetentionFields):
    display_name: str | None = Field(None, alias="displayName")
    kms_key_id: str | None = Field(None, alias="kmsKeyId", min_length=1, max_length=255)
    freeform_tags: Tags | None = Field(None, alias="freeformTags")
    defined_tags: Tags | None = Field(None, alias="definedTags")


if TYPE_CHECKING:  # a Literal built at run time is opaque to the type checker
    DayOfWeek = str
    Month = str
else:  # the domain's lists, one spelling
    DayOfWeek = Literal[tuple(DAYS_OF_WEEK)]
    Month = Literal[tuple(MONTHS)]


class VolumeBackupScheduleDetails(_Body):
    backup_type: Literal["FULL", "INCREMENTAL"] = Field(alias="backupType")
    period: Literal["ONE_HOUR", "ONE_DAY", "ONE_WEEK", "ONE_MONTH", "ONE_YEAR"]
    retention_seconds: int = Field(alias="retentionSeconds")
    offset_type: Literal["STRUCTURED", "NUMERIC_SECONDS"] | None = Field(None, alias="offsetType")
    offset_seconds: int | None = Field(None, alias="offsetSeconds")
    hour_of_day: int | None = Field(None, alias="hourOfDay", ge=0, le=23)
    day_of_week: DayOfWeek | None = Field(None, alias="dayOfWeek")
    day_of_month: int | None = Field(None, alias="dayOfMonth", ge=1, le=31)
    month: Month | None = None
    time_zone: Literal["UTC", "REGIONAL_DATA_CENTER_TIME"] | None = Field(None, alias="timeZone")
    retention_period: RetentionDurationDetails | None = Field(None, alias="retentionPeriod")
    is_prevent_deletion_enabled: bool | None = Field(None, alias="isPreventDeletionEnabled")
    is_retention_lock_enabled: bool | None = Field(None, alias="isRetentionLockEnabled")


class CreateVolumeBackupPolicyDetails(_Body):
    compartment_id: str = Field(alias="compartmentId", min_length=1, max_length=255)
    display_name: str | None = Field(None, alias="displayName")
    destination_region: str | None = Field(None, alias="destinationRegion", min_length=1, max_length=64)
    schedules: list[VolumeBackupScheduleDetails] | None = None
    freeform_tags: Tags | None = Field(None, alias="freeformTags")
    defined_tags: Tags | None = Field(None, alias="definedTags")


class UpdateVolumeBackupPolicyDetails(_Body):
    display_name: str | None = Field(None, alias="displayName")
    destination_region: str | None = Field(None, alias="destinationRegion", min_length=1, max_length=64)
    schedules: list[VolumeBackupScheduleDetails] | None = None
    freeform_tags: Tags | None = Field(None, alias="freeformTags")
    defined_tags: Tags | None = Field(None, alias="definedTags")


class CreateVolumeBackupPolicyAssignmentDetails(_Body):
    xrc_kms_key_id: str | None = Field(None, alias="xrcKmsKeyId", min_length=1, max_length=255)
    asset_id: str = Field(alias="assetId", min_length=1, max_length=255)
    policy_id: str = Field(alias="policyId", min_length=1, max_length=255)


class CopyBootVolumeBackupDetails(_Body):
    destination_region: str = Field(alias="destinationRegion", min_length=1, max_length=64)
    display_name: str | None = Field(None, alias="displayName")
    kms_key_id: str | None = Field(None, alias="kmsKeyId", min_length=1, max_length=255)


class ChangeCompartmentDetails(_Body):
    compartment_id: str = Field(alias="compartmentId", min_length=1, max_length=255)


class SourceDetails(_Body):
    type: Literal["bootVolumeBackup", "bootVolume"]
    id: str = Field(min_length=1, max_length=255)


class CreateBootVolumeDetails(_Body):
    UNSUPPORTED: ClassVar[dict[str, Any]] = {
        "clusterPlacementGroupId": None,
        "isAutoTuneEnabled": False,
        "bootVolumeReplicas": [],
        "autotunePolicies": [],
    }
    xrc_kms_key_id: str | None = Field(None, alias="xrcKmsKeyId", min_length=1, max_length=255)
    compartment_id: str = Field(alias="compartmentId", min_length=1, max_length=255)
    source_details: SourceDetails = Field(alias="sourceDetails")
    availability_domain: str | None = Field(None, alias="availabilityDomain")
    display_name: str | None = Field(None, alias="displayName")
    size_in_gbs: int | None = Field(None, alias="sizeInGBs")
    kms_key_id: str | None = Field(None, alias="kmsKeyId", min_length=1, max_length=255)
    vpus_per_gb: int | None = Field(None, alias="vpusPerGB", ge=0, le=120)
    backup_policy_id: str | None = Field(None, alias="backupPolicyId", min_length=1, max_length=255)
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


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside an annotation such as `Model | None` or `list[Model] | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _field_path(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The wire name of the offending field, e.g. sourceDetails.id or schedules[0].period."""
    path = ""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        info = None
        if current is not None:  # pydantic names fields by alias in errors; accept either
            fields = current.model_fields
            info = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        name = info.alias if info is not None and info.alias else str(part)
        path += f".{name}" if path else name
        current = _inner_model(info.annotation) if info is not None else None
    return path


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
