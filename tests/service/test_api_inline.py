"""The ASGI app in process: requests signed by the oci SDK's own Signer go through the same
middleware, authentication, parsing, service calls and shapes as on a socket, with the jobs run
inline (tests/service/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import oci
import pytest
from oci._vendor import requests  # the SDK signs requests of its own vendored copy
from starlette.testclient import TestClient

from bootvault.api.app import create_app
from tests.service.conftest import House

BASE = "http://testserver/20160918"


class SignedClient:
    """A TestClient whose requests carry the OCI signature the SDK makes for the house's key."""

    def __init__(self, house: House) -> None:
        t = house.tenancy
        self.signer = oci.signer.Signer(
            t.tenancy_id, t.user_id, t.fingerprint, None, private_key_content=t.private_key_pem.decode()
        )
        self.http = TestClient(create_app(house.ctx), raise_server_exceptions=False)

    def send(self, method: str, path: str, body: dict[str, Any] | None = None, sign: bool = True):  # type: ignore[no-untyped-def]
        prepared = requests.Request(method, BASE + path, json=body).prepare()
        if sign:
            self.signer(prepared)
        headers = {k: v for k, v in prepared.headers.items() if k.lower() != "host"}
        return self.http.request(method, BASE + path, content=prepared.body, headers=headers)


@pytest.fixture
def api(house: House) -> Iterator[SignedClient]:
    client = SignedClient(house)
    with client.http:
        yield client


def test_a_backup_created_over_the_api_becomes_available(house: House, api: SignedClient) -> None:
    volume_id = house.volume()
    made = api.send("POST", "/bootVolumeBackups", {"bootVolumeId": volume_id, "type": "FULL"})
    assert made.status_code == 200, made.text
    body = made.json()
    assert body["lifecycleState"] == "REQUEST_RECEIVED" and body["timeCreated"] is None
    assert made.headers["etag"] and made.headers["opc-request-id"]
    house.run_jobs()
    got = api.send("GET", f"/bootVolumeBackups/{body['id']}")
    assert got.status_code == 200
    assert (got.json()["lifecycleState"], got.json()["backupProgress"]) == ("AVAILABLE", 100)


def test_errors_are_oci_shaped(house: House, api: SignedClient) -> None:
    missing = api.send("GET", "/bootVolumeBackups/ocid1.bootvolumebackup.oc1.local-1.nosuchbackup")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NotAuthorizedOrNotFound"
    unsigned = api.send("GET", "/bootVolumeBackups?compartmentId=" + house.caller.tenancy_id, sign=False)
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "NotAuthenticated")
    unknown = api.send("POST", "/bootVolumeBackups", {"bootVolumeId": house.volume(), "colour": "red"})
    assert unknown.status_code == 400 and "colour" in unknown.json()["message"]
    assert set(json.loads(unknown.text)) == {"code", "message"}
