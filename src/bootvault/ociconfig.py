"""Write an OCI SDK/CLI config file and private key for a bootvault tenancy."""

from __future__ import annotations

from pathlib import Path

from bootvault.fsutil import write_private
from bootvault.service.identity import NewTenancy


def write_oci_config(path: Path, new: NewTenancy, region: str, profile: str = "DEFAULT") -> Path:
    """Writes PATH (profile DEFAULT) and the private key beside it; both readable by the owner only."""
    path = path.expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    key_path = path.with_name(path.name + ".key.pem")
    # The trailing label line is what the OCI console puts in downloaded keys; the CLI checks for it.
    write_private(key_path, new.private_key_pem + b"OCI_API_KEY\n", exclusive=False)
    text = (
        f"[{profile}]\n"
        f"user={new.user_id}\n"
        f"fingerprint={new.fingerprint}\n"
        f"tenancy={new.tenancy_id}\n"
        f"region={region}\n"
        f"key_file={key_path}\n"
    )
    write_private(path, text.encode(), exclusive=False)
    return key_path

