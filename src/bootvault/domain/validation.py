"""Field rules shared by every resource (OCI's limits for names and tags)."""

from __future__ import annotations

from typing import Any

from bootvault.domain.errors import EtagMismatch, InvalidArgument
from bootvault.domain.models import Tags

MAX_NAME = 255
MAX_TAG_KEY = 100
MAX_TAG_VALUE = 256
MAX_TAGS = 64
MAX_NAMESPACE = 100


def check_display_name(name: str | None, field: str = "displayName") -> None:
    if name is None:
        return
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidArgument(f"{field} must be between 1 and {MAX_NAME} characters long.")


def _check_key(key: Any, field: str, limit: int) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= limit or any(c.isspace() for c in key):
        raise InvalidArgument(
            f"{field} has an invalid key {key!r}: keys are 1-{limit} characters, no spaces."
        )


def _check_value(value: Any, field: str, key: str) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"{field}.{key}: only string tag values are supported.")
    if len(value) > MAX_TAG_VALUE:
        raise InvalidArgument(f"{field}.{key}: a tag value is at most {MAX_TAG_VALUE} characters.")


def check_tags(freeform: dict[str, Any] | None, defined: dict[str, Any] | None) -> Tags:
    """Validate free-form and defined tags; returns them as a Tags record."""
    freeform = freeform or {}
    defined = defined or {}
    for key, value in freeform.items():
        _check_key(key, "freeformTags", MAX_TAG_KEY)
        _check_value(value, "freeformTags", key)
    count = len(freeform)
    for namespace, keys in defined.items():
        _check_key(namespace, "definedTags", MAX_NAMESPACE)
        if not isinstance(keys, dict):
            raise InvalidArgument(f"definedTags.{namespace} must be an object of tag keys to values.")
        for key, value in keys.items():
            _check_key(key, f"definedTags.{namespace}", MAX_TAG_KEY)
            _check_value(value, f"definedTags.{namespace}", key)
        count += len(keys)
    if count > MAX_TAGS:
        raise InvalidArgument(f"A resource can have at most {MAX_TAGS} tags; the request has {count}.")
    return Tags(freeform=dict(freeform), defined={ns: dict(k) for ns, k in defined.items()})


def tag_update(
    freeform: dict[str, Any] | None, defined: dict[str, Any] | None, current: Tags
) -> dict[str, Any]:
    """The column values of an update's tags: each kind given replaces the current one, the
    other stays; nothing when the update gives neither."""
    if freeform is None and defined is None:
        return {}
    merged = check_tags(
        freeform if freeform is not None else current.freeform,
        defined if defined is not None else current.defined,
    )
    return {"freeform_tags": merged.freeform, "defined_tags": merged.defined}


def check_if_match(current_etag: str, if_match: str | None) -> None:
    """An if-match header, when given, must be the resource's current etag (412 otherwise)."""
    if if_match is not None and if_match != current_etag:
        raise EtagMismatch(EtagMismatch.IF_MATCH)
