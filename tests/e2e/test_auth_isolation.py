"""Signature checks and tenancy isolation, against the live server.

Raw requests are signed with the SDK's own signer and sent with the SDK's vendored `requests`,
exactly as `oci.base_client` does, then tampered with after signing.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oci
import pytest
from oci._vendor import requests
from oci.signer import AbstractBaseSigner, load_private_key_from_file

from bootvault.service.identity import generate_api_key
from tests.helpers import MIB, Deployment, Tenant, make_image, wait_state

API = "/20160918"
MISSING_BACKUP = "ocid1.bootvolumebackup.oc1.local-1.aaaaaaaadoesnotexist"
AUTH_MESSAGE_KEYS = {"code", "message"}


# --------------------------------------------------------------------------------------------------
# helpers


def _signer(tenant: Tenant) -> oci.signer.Signer:
    return oci.signer.Signer.from_config(tenant.config)


class _HeaderListSigner(AbstractBaseSigner):
    """The SDK signer with a custom list of signed headers (to leave one out)."""

    def __init__(self, tenant: Tenant, generic: list[str], body: list[str]) -> None:
        cfg = tenant.config
        private_key = load_private_key_from_file(cfg["key_file"])
        api_key = f"{cfg['tenancy']}/{cfg['user']}/{cfg['fingerprint']}"
        self.create_signers(api_key, private_key, generic, body)


def _prepare(
    tenant: Tenant,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> requests.PreparedRequest:
    data = json.dumps(body).encode() if body is not None else None
    std = {"accept": "application/json", "content-type": "application/json"}
    return requests.Request(
        method, tenant.endpoint + API + path, data=data, headers={**std, **(headers or {})}
    ).prepare()


def _send(prepared: requests.PreparedRequest) -> requests.Response:
    with requests.Session() as session:
        return session.send(prepared, timeout=30)


def _list_path(tenant: Tenant, **query: str) -> str:
    qs = "&".join(f"{k}={v}" for k, v in {"compartmentId": tenant.tenancy_id, **query}.items())
    return f"/bootVolumeBackups?{qs}"


def _assert_401(resp: requests.Response) -> None:
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert set(body) == AUTH_MESSAGE_KEYS
    assert body["code"] == "NotAuthenticated"
    assert body["message"]
    assert resp.headers.get("opc-request-id")
    assert resp.headers["content-type"].startswith("application/json")


def _backups_named(tenant: Tenant, name: str) -> list[Any]:
    return tenant.client().list_boot_volume_backups(tenant.tenancy_id, display_name=name).data


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth-img") / "disk.img"
    make_image(path, 4 * MIB, seed=7)
    return path


@pytest.fixture(scope="module")
def volume(deployment: Deployment, tenant: Tenant, image: Path) -> str:
    return deployment.import_volume(tenant, image, "auth-vol")


@pytest.fixture(scope="module")
def other(deployment: Deployment) -> Tenant:
    return deployment.new_tenant("other")


@pytest.fixture(scope="module")
def backup(tenant: Tenant, volume: str) -> Iterator[oci.core.models.BootVolumeBackup]:
    client = tenant.client()
    created = client.create_boot_volume_backup(
        oci.core.models.CreateBootVolumeBackupDetails(
            boot_volume_id=volume, display_name=_name("tenant-a"), type="FULL"
        )
    ).data
    yield wait_state(client, "get_boot_volume_backup", created.id, "AVAILABLE").data


# --------------------------------------------------------------------------------------------------
# signature verification


def test_untampered_raw_requests_are_accepted(tenant: Tenant, volume: str) -> None:
    """Control: the raw path used below works when nothing is tampered with."""
    signer = _signer(tenant)
    listing = _prepare(tenant, "GET", _list_path(tenant, limit="5"))
    signer(listing)
    resp = _send(listing)
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json(), list)

    name = _name("raw-ok")
    create = _prepare(tenant, "POST", "/bootVolumeBackups", {"bootVolumeId": volume, "displayName": name})
    signer(create)
    resp = _send(create)
    assert resp.status_code == 200, resp.text
    created = resp.json()
    assert created["displayName"] == name
    assert created["bootVolumeId"] == volume
    assert resp.headers.get("etag")
    assert [b.id for b in _backups_named(tenant, name)] == [created["id"]]
    wait_state(tenant.client(), "get_boot_volume_backup", created["id"], "AVAILABLE")


def test_tampered_body_is_rejected_and_creates_nothing(tenant: Tenant, volume: str) -> None:
    signer = _signer(tenant)
    signed_name = _name("signed")
    tampered_name = _name("tamper")
    assert len(signed_name) == len(tampered_name)  # same content-length: only the digest differs
    body = {"bootVolumeId": volume, "displayName": signed_name, "type": "FULL"}
    prepared = _prepare(tenant, "POST", "/bootVolumeBackups", body)
    signer(prepared)
    original = prepared.body
    assert isinstance(original, bytes)
    prepared.body = original.replace(signed_name.encode(), tampered_name.encode())
    assert prepared.body != original
    assert prepared.headers["content-length"] == str(len(prepared.body))

    _assert_401(_send(prepared))
    assert _backups_named(tenant, tampered_name) == []
    assert _backups_named(tenant, signed_name) == []


def test_signature_from_another_private_key_is_rejected(tenant: Tenant) -> None:
    cfg = tenant.config
    other_private, _, other_fingerprint = generate_api_key()
    assert other_fingerprint != cfg["fingerprint"]

    # The tenant's keyId, but signed with a key the server has never seen.
    impostor = oci.signer.Signer(
        cfg["tenancy"], cfg["user"], cfg["fingerprint"], None, private_key_content=other_private
    )
    prepared = _prepare(tenant, "GET", _list_path(tenant))
    impostor(prepared)
    assert f'keyId="{cfg["tenancy"]}/{cfg["user"]}/{cfg["fingerprint"]}"' in prepared.headers["authorization"]
    _assert_401(_send(prepared))

    # The new key's own fingerprint is not registered either.
    unregistered = oci.signer.Signer(
        cfg["tenancy"], cfg["user"], other_fingerprint, None, private_key_content=other_private
    )
    prepared = _prepare(tenant, "GET", _list_path(tenant))
    unregistered(prepared)
    _assert_401(_send(prepared))


def test_request_target_tampered_after_signing(
    tenant: Tenant, backup: oci.core.models.BootVolumeBackup
) -> None:
    signer = _signer(tenant)

    # The query string is part of (request-target).
    prepared = _prepare(tenant, "GET", _list_path(tenant, limit="1"))
    signer(prepared)
    assert prepared.url.endswith("limit=1")
    prepared.url = prepared.url[: -len("limit=1")] + "limit=2"
    _assert_401(_send(prepared))

    # So is the method: a signed GET replayed as DELETE deletes nothing.
    prepared = _prepare(tenant, "GET", f"/bootVolumeBackups/{backup.id}")
    signer(prepared)
    prepared.method = "DELETE"
    _assert_401(_send(prepared))
    assert tenant.client().get_boot_volume_backup(backup.id).data.lifecycle_state == "AVAILABLE"


def test_date_header_removed_after_signing(tenant: Tenant) -> None:
    prepared = _prepare(tenant, "GET", _list_path(tenant))
    _signer(tenant)(prepared)
    assert "date" in prepared.headers
    del prepared.headers["date"]
    _assert_401(_send(prepared))


def test_host_missing_from_signed_headers(tenant: Tenant) -> None:
    signer = _HeaderListSigner(tenant, ["date", "(request-target)"], [])
    prepared = _prepare(tenant, "GET", _list_path(tenant))
    signer(prepared)
    auth = prepared.headers["authorization"]
    assert 'headers="date (request-target)"' in auth
    assert prepared.headers["host"]  # sent, just not signed
    _assert_401(_send(prepared))


def test_post_without_x_content_sha256(tenant: Tenant, volume: str) -> None:
    name = _name("nosha")
    body = {"bootVolumeId": volume, "displayName": name}

    # Signed as usual, then the digest header dropped.
    prepared = _prepare(tenant, "POST", "/bootVolumeBackups", body)
    _signer(tenant)(prepared)
    del prepared.headers["x-content-sha256"]
    _assert_401(_send(prepared))

    # Signed without the body headers at all (the SDK's `without_content_headers` mode).
    prepared = _prepare(tenant, "POST", "/bootVolumeBackups", body)
    _signer(tenant).without_content_headers(prepared)
    assert "x-content-sha256" not in prepared.headers
    assert 'headers="date (request-target) host"' in prepared.headers["authorization"]
    _assert_401(_send(prepared))

    assert _backups_named(tenant, name) == []


@pytest.mark.parametrize(("offset", "accepted"), [(-360, False), (360, False), (-120, True)])
def test_clock_skew(tenant: Tenant, offset: int, accepted: bool) -> None:
    prepared = _prepare(tenant, "GET", _list_path(tenant))
    date = email.utils.formatdate(time.time() + offset, usegmt=True)
    prepared.headers["date"] = date
    _signer(tenant)(prepared)  # the signer keeps a preset date and signs it
    assert prepared.headers["date"] == date
    resp = _send(prepared)
    if accepted:
        assert resp.status_code == 200, resp.text
    else:
        _assert_401(resp)


def test_no_authorization_header(tenant: Tenant) -> None:
    prepared = _prepare(tenant, "GET", _list_path(tenant), headers={"opc-request-id": "UNSIGNED1"})
    assert "authorization" not in prepared.headers
    resp = _send(prepared)
    _assert_401(resp)
    assert _echoes(resp.headers["opc-request-id"], "UNSIGNED1")

    prepared = _prepare(tenant, "GET", f"/bootVolumeBackups/{MISSING_BACKUP}")
    _assert_401(_send(prepared))  # 401 before any lookup, not 404


# --------------------------------------------------------------------------------------------------
# tenancy isolation


def test_cross_tenancy_isolation(
    tenant: Tenant, other: Tenant, volume: str, backup: oci.core.models.BootVolumeBackup
) -> None:
    a, b = tenant.client(), other.client()
    assert other.tenancy_id != tenant.tenancy_id
    before = a.get_boot_volume_backup(backup.id)
    assert before.data.lifecycle_state == "AVAILABLE"

    def expect(status: int, code: str, fn: Any, *args: Any, **kw: Any) -> None:
        with pytest.raises(oci.exceptions.ServiceError) as info:
            fn(*args, **kw)
        assert (info.value.status, info.value.code) == (status, code), info.value

    expect(404, "NotAuthorizedOrNotFound", b.get_boot_volume_backup, backup.id)
    expect(
        404,
        "NotAuthorizedOrNotFound",
        b.update_boot_volume_backup,
        backup.id,
        oci.core.models.UpdateBootVolumeBackupDetails(display_name="stolen"),
    )
    expect(404, "NotAuthorizedOrNotFound", b.delete_boot_volume_backup, backup.id)
    expect(404, "NotAuthorizedOrNotFound", b.list_boot_volume_backups, tenant.tenancy_id)
    expect(404, "NotAuthorizedOrNotFound", b.get_boot_volume, volume)
    expect(
        400,
        "RelatedResourceNotAuthorizedOrNotFound",
        b.create_boot_volume_backup,
        oci.core.models.CreateBootVolumeBackupDetails(boot_volume_id=volume, display_name="b-steals"),
    )
    expect(
        400,
        "RelatedResourceNotAuthorizedOrNotFound",
        b.create_boot_volume,
        oci.core.models.CreateBootVolumeDetails(
            compartment_id=other.tenancy_id,
            availability_domain="bootvault:AD-1",
            source_details=oci.core.models.BootVolumeSourceFromBootVolumeBackupDetails(id=backup.id),
        ),
    )

    assert b.list_boot_volume_backups(other.tenancy_id).data == []
    assert b.list_boot_volumes(compartment_id=other.tenancy_id).data == []

    # A's backup is untouched and A still sees it; A can't see into B either.
    after = a.get_boot_volume_backup(backup.id)
    assert after.data.display_name == backup.display_name
    assert after.data.lifecycle_state == "AVAILABLE"
    assert after.headers["etag"] == before.headers["etag"]
    assert backup.id in {
        x.id for x in a.list_boot_volume_backups(tenant.tenancy_id, boot_volume_id=volume).data
    }
    assert _backups_named(tenant, "b-steals") == []
    expect(404, "NotAuthorizedOrNotFound", a.list_boot_volume_backups, other.tenancy_id)


# --------------------------------------------------------------------------------------------------
# idempotency


def test_concurrent_creates_with_one_retry_token(tenant: Tenant, volume: str) -> None:
    token = uuid.uuid4().hex
    name = _name("retry")
    details = oci.core.models.CreateBootVolumeBackupDetails(
        boot_volume_id=volume, display_name=name, type="FULL"
    )
    n = 20
    clients = [tenant.client() for _ in range(n)]
    barrier = threading.Barrier(n)
    ids: list[str | None] = [None] * n
    errors: list[BaseException] = []

    def call(i: int) -> None:
        barrier.wait()
        try:
            ids[i] = clients[i].create_boot_volume_backup(details, opc_retry_token=token).data.id
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert None not in ids
    assert len(set(ids)) == 1, ids
    backup_id = ids[0]
    assert backup_id is not None

    listed = _backups_named(tenant, name)
    assert [b.id for b in listed] == [backup_id]

    # A later repeat with the same body still returns the same backup.
    again = tenant.client().create_boot_volume_backup(details, opc_retry_token=token)
    assert again.data.id == backup_id

    # The same token with another body is refused.
    changed = oci.core.models.CreateBootVolumeBackupDetails(
        boot_volume_id=volume, display_name=name + "-x", type="FULL"
    )
    with pytest.raises(oci.exceptions.ServiceError) as info:
        tenant.client().create_boot_volume_backup(changed, opc_retry_token=token)
    assert (info.value.status, info.value.code) == (409, "InvalidatedRetryToken")
    assert _backups_named(tenant, name + "-x") == []

    done = wait_state(tenant.client(), "get_boot_volume_backup", backup_id, "AVAILABLE")
    assert done.data.display_name == name
    assert [b.id for b in _backups_named(tenant, name)] == [backup_id]


# --------------------------------------------------------------------------------------------------
# opc-request-id


def _echoes(answered: str, sent: str) -> bool:
    """OCI answers the client's opc-request-id followed by two server segments."""
    first, *server = answered.split("/")
    return first == sent and len(server) == 2 and all(server)


def test_opc_request_id_is_echoed(tenant: Tenant, backup: oci.core.models.BootVolumeBackup) -> None:
    client = tenant.client()
    move = oci.core.models.ChangeBootVolumeBackupCompartmentDetails(compartment_id=tenant.tenancy_id)

    ok = client.change_boot_volume_backup_compartment(backup.id, move, opc_request_id="MYREQ123")
    assert 200 <= ok.status < 300
    assert _echoes(ok.headers["opc-request-id"], "MYREQ123")
    assert ok.request_id == ok.headers["opc-request-id"]
    assert client.get_boot_volume_backup(backup.id).data.compartment_id == tenant.tenancy_id

    with pytest.raises(oci.exceptions.ServiceError) as info:
        client.change_boot_volume_backup_compartment(MISSING_BACKUP, move, opc_request_id="MYREQ123")
    assert (info.value.status, info.value.code) == (404, "NotAuthorizedOrNotFound")
    assert _echoes(info.value.headers["opc-request-id"], "MYREQ123")
    assert info.value.request_id == info.value.headers["opc-request-id"]

    # Operations whose SDK signature has no opc_request_id: the raw header is echoed too.
    signer = _signer(tenant)
    for path, status in (
        (f"/bootVolumeBackups/{backup.id}", 200),
        (f"/bootVolumeBackups/{MISSING_BACKUP}", 404),
    ):
        prepared = _prepare(tenant, "GET", path, headers={"opc-request-id": "MYREQ123"})
        signer(prepared)
        resp = _send(prepared)
        assert resp.status_code == status, resp.text
        assert _echoes(resp.headers["opc-request-id"], "MYREQ123")

    # Without one, the server makes one up.
    resp = client.get_boot_volume_backup(backup.id)
    assert resp.headers.get("opc-request-id")


def test_header_cap_counts_headers_only(tenant: Tenant) -> None:
    """A body sent in the same write as its headers is no header: only headers past the cap
    (32 KiB) answer 431."""
    import contextlib
    import socket
    from urllib.parse import urlsplit

    host, port = urlsplit(tenant.endpoint).hostname, urlsplit(tenant.endpoint).port

    def status_of(raw: bytes) -> int:
        with socket.create_connection((host, port), timeout=30) as s:
            with contextlib.suppress(OSError):  # answered and closed before the body was sent
                s.sendall(raw)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return int(data[9:12])

    body = b'{"displayName": "' + b"x" * (100 << 10) + b'"}'
    head = (
        f"POST /20160918/bootVolumeBackups HTTP/1.1\r\nhost: {host}:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    assert status_of(head + body) == 401  # unsigned: refused without its body being read
    big_headers = "".join(f"x-pad-{i}: {'v' * 1000}\r\n" for i in range(40))
    assert status_of(f"GET / HTTP/1.1\r\nhost: {host}\r\n{big_headers}\r\n".encode()) == 431
