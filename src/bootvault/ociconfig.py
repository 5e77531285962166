"""Write an OCI SDK/CLI config file and private key for a bootvault tenancy."""

from __future__ import annotations

import os
from pathlib import Path

from bootvault.fsutil import write_private
from bootvault.service.identity import NewTenancy


def config_paths(path: Path) -> tuple[Path, Path]:
    """(config, private key) for PATH; refuses if either exists in any form (file, link, dir)."""
    path = Path(os.path.abspath(path.expanduser()))
    key_path = path.with_name(path.name + ".key.pem")
    for p in (path, key_path):
        if os.path.lexists(p):
            raise FileExistsError(f"{p} exists; choose another --oci-config path (nothing is overwritten)")
    return path, key_path


def write_oci_config(path: Path, new: NewTenancy, region: str, profile: str = "DEFAULT") -> Path:
    """Writes PATH (profile DEFAULT) and the private key beside it, readable by the owner only.
    Neither may exist: they are created exclusively and no link is followed."""
    path, key_path = config_paths(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The trailing label line is what the OCI console puts in downloaded keys; the CLI checks for it.
    write_private(key_path, new.private_key_pem + b"OCI_API_KEY\n")
    text = (
        f"[{profile}]\n"
        f"user={new.user_id}\n"
        f"fingerprint={new.fingerprint}\n"
        f"tenancy={new.tenancy_id}\n"
        f"region={region}\n"
        f"key_file={key_path}\n"
    )
    write_private(path, text.encode())
    return key_path
