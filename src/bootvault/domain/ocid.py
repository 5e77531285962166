"""Oracle Cloud IDs: ocid1.<resource type>.<realm>.[region].<unique id>."""

from __future__ import annotations

import re
import secrets

REALM = "oc1"
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_OCID_RE = re.compile(r"^ocid1\.([a-z0-9]+)\.[a-z0-9-]+\.[a-z0-9-]*\.[a-z0-9]+$")


def mint(resource_type: str, region: str = "") -> str:
    """A new OCID. Regional resources carry the region; global ones (tenancy, user) leave it empty."""
    unique = "".join(secrets.choice(_ALPHABET) for _ in range(60))
    return f"ocid1.{resource_type}.{REALM}.{region}.aaaaaaaa{unique}"


def resource_type(ocid: str) -> str | None:
    """The resource type of a well-formed OCID, or None when the string is not one."""
    match = _OCID_RE.match(ocid)
    return match.group(1) if match else None
