"""The console over HTTPS, as `make run TLS=1` serves it: the demo prints the console's URL and a
sign-in that works, and the cookies are Secure, HttpOnly, SameSite=Strict and __Host- prefixed."""

from __future__ import annotations

import re
import ssl
import subprocess
from pathlib import Path

import httpx

from tests.e2e.test_tls import wait_for_line
from tests.helpers import BIN, Deployment, wait_port


def _cookie_attributes(response: httpx.Response, name: str) -> set[str]:
    header = next(h for h in response.headers.get_list("set-cookie") if h.startswith(name + "="))
    return {part.strip().lower() for part in header.split(";")[1:]}


def test_demo_console_over_https(tmp_path: Path) -> None:
    dep = Deployment(tmp_path, tls_demo=True)
    dep.cli("migrate")
    log = tmp_path / "demo.out"
    with open(log, "wb") as out:
        dep.proc = subprocess.Popen(
            [str(BIN / "bootvault"), "serve", "--port", str(dep.port), "--demo", "--tls-demo"],
            env=dep.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        text = wait_for_line(log, "docs/tls.md", dep.proc)
        found = re.search(r"Operator console: (\S+)  \(sign in as '([^']+)', password '([^']+)'\)", text)
        assert found is not None, text
        url, name, password = found.groups()
        wait_port(dep.port, host=dep.host)  # the demo prints before the server listens
        assert url == f"https://127.0.0.1:{dep.port}/console/"
        with httpx.Client(verify=ssl.create_default_context(cafile=str(dep.ca_bundle))) as http:
            form = http.get(url + "sign-in")
            assert {"secure", "httponly", "samesite=strict", "path=/"} <= _cookie_attributes(
                form, "__Host-bv_signin"
            )
            nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
            assert nonce is not None
            signed = http.post(
                url + "sign-in", data={"nonce": nonce.group(1), "username": name, "password": password}
            )
            assert signed.status_code == 303 and signed.headers["location"] == "/console/"
            assert {"secure", "httponly", "samesite=strict", "path=/"} <= _cookie_attributes(
                signed, "__Host-bv_session"
            )
            dashboard = http.get(url)
            assert dashboard.status_code == 200 and f"Signed in as <bdi>{name}</bdi>" in dashboard.text
            assert "frame-ancestors 'none'" in dashboard.headers["content-security-policy"]
            assert "unsafe-inline" not in dashboard.headers["content-security-policy"]
            assert http.cookies.get("__Host-bv_session") not in dashboard.text
    finally:
        dep.stop()
