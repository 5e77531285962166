"""Hostile input on the routes of regions and copies, on a live server: the region protocol
unsigned, forged or with junk (never 5xx: 401, or 400/404 for join), and signed OCI calls to
CopyBootVolumeBackup and the work request routes with random bodies, ids and queries (never 5xx)."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Deployment, Tenant, raw_request

PROTOCOL = "/bootvault/region/v1"
PATHS = [
    "/join",
    "/identity",
    "/copies",
    "/copies/ocid1.bootvolumebackup.oc1.local-1.aaaa",
    "/copies/x/missing",
    "/copies/x/blocks?tenancyId=t&percent=nan",
    "/copies/x/commit?tenancyId=t",
    "/copies/x/fail",
    "/copies/x/started",
]
junk = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
        lambda kids: st.one_of(
            st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=10), kids, max_size=4)
        ),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode()),
)
VISIBLE = st.characters(min_codepoint=33, max_codepoint=126)  # what a header value can carry
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    method=st.sampled_from(["GET", "POST", "PUT"]),
    body=junk,
    region=st.one_of(st.none(), st.text(VISIBLE, max_size=12)),
    auth=st.one_of(st.none(), st.text(VISIBLE, max_size=40), st.just("BootvaultRegion AAAA")),
)
def test_region_protocol_never_fails_on_junk(
    deployment: Deployment, path: str, method: str, body: bytes, region: str | None, auth: str | None
) -> None:
    headers = {}
    if region is not None:
        headers["x-bootvault-region"] = region
    if auth is not None:
        headers["authorization"] = auth
    resp = httpx.request(
        method, deployment.endpoint + PROTOCOL + path, content=body, headers=headers, timeout=30
    )
    assert resp.status_code < 500, (resp.status_code, resp.text)
    if resp.status_code != 405:
        assert set(resp.json()) == {"code", "message"}, resp.text
    if resp.json().get("code") == "CannotParseRequest":  # the HTTP layer (a GET with a body)
        return
    if path != "/join" and method in ("GET", "POST") and resp.status_code not in (404, 405):
        assert resp.status_code == 401, resp.text  # nobody is paired with this deployment


@FUZZ
@given(body=junk, backup=st.text(max_size=30))
def test_copy_never_fails_on_junk(tenant: Tenant, body: bytes, backup: str) -> None:
    ident = quote(backup or "x", safe="") if backup else "ocid1.bootvolumebackup.oc1.local-1.aaaa"
    resp = raw_request(tenant, "POST", f"/bootVolumeBackups/{ident}/actions/copy", body)
    assert resp.status_code < 500 and resp.status_code in (400, 401, 404, 409), (resp.status_code, resp.text)


@FUZZ
@given(
    ident=st.text(max_size=40),
    query=st.dictionaries(
        st.sampled_from(["compartmentId", "resourceId", "limit", "page"]), st.text(max_size=20), max_size=4
    ),
)
def test_work_requests_never_fail_on_junk(tenant: Tenant, ident: str, query: dict[str, str]) -> None:
    qs = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    for path in (
        f"/workRequests/{quote(ident, safe='')}",
        f"/workRequests/{quote(ident, safe='')}/logs",
        f"/workRequests?{qs}",
    ):
        resp = raw_request(tenant, "GET", path)
        assert resp.status_code in (200, 400, 401, 404), (path, resp.status_code, resp.text)
