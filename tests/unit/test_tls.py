"""The demo CA (`serve --tls-demo`) and the certificate checks of `serve --tls-cert/--tls-key`."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from bootvault.config import Settings
from bootvault.tls import TlsError, check_pair, demo_names, endpoint_host, ensure_demo_tls, region_metadata

FILES = ("ca.pem", "ca.key", "server.pem", "server.key")


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", **kw).resolved()  # type: ignore[arg-type]


def handshake(ca: Path, cert: Path, key: Path, server_name: str) -> str:
    """A TLS handshake between a server presenting cert/key and a client trusting only ca that
    asks for server_name; returns the negotiated version or raises the client's error."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    client_ctx = ssl.create_default_context(cafile=str(ca))
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            version = tls.version() or ""
            tls.sendall(b"x")
            return version
    finally:
        t.join(timeout=10)
        listener.close()


def test_demo_ca_is_made_private_and_verifies_the_demo_names(tmp_path: Path) -> None:
    s = settings(tmp_path)
    made = ensure_demo_tls(s)
    tls_dir = s.data_dir / "tls"
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
    for name in FILES:
        assert stat.S_IMODE((tls_dir / name).stat().st_mode) == 0o600, name
    assert made.ca_cert == tls_dir / "ca.pem"
    assert (made.cert, made.key) == (tls_dir / "server.pem", tls_dir / "server.key")

    cert = x509.load_pem_x509_certificate(made.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "iaas.local-1.bootvault.test"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    for name in ("localhost", "127.0.0.1", "iaas.local-1.bootvault.test"):
        assert handshake(made.ca_cert, made.cert, made.key, name).startswith("TLS")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(made.ca_cert, made.cert, made.key, "example.com")


def test_existing_files_are_used_never_replaced(tmp_path: Path) -> None:
    s = settings(tmp_path)
    ensure_demo_tls(s)
    tls_dir = s.data_dir / "tls"
    before = {n: (tls_dir / n).read_bytes() for n in FILES}
    ensure_demo_tls(s)
    assert {n: (tls_dir / n).read_bytes() for n in FILES} == before

    # Without the server pair, the same CA issues a new one (clients keep trusting ca.pem).
    (tls_dir / "server.pem").unlink()
    (tls_dir / "server.key").unlink()
    made = ensure_demo_tls(s)
    assert made.ca_cert.read_bytes() == before["ca.pem"]
    assert made.cert.read_bytes() != before["server.pem"]
    assert handshake(made.ca_cert, made.cert, made.key, "localhost").startswith("TLS")


@pytest.mark.parametrize("lone", ["ca.key", "server.pem", "server.key"])
def test_a_half_pair_is_refused_not_replaced(tmp_path: Path, lone: str) -> None:
    s = settings(tmp_path)
    tls_dir = s.data_dir / "tls"
    if lone.startswith("server"):
        ensure_demo_tls(s)
        other = "server.key" if lone == "server.pem" else "server.pem"
        (tls_dir / other).unlink()
    else:
        tls_dir.mkdir(parents=True)
        (tls_dir / lone).write_bytes(b"mine")
    content = (tls_dir / lone).read_bytes()
    with pytest.raises(TlsError, match="exists without"):
        ensure_demo_tls(s)
    assert (tls_dir / lone).read_bytes() == content


def test_links_are_not_followed(tmp_path: Path) -> None:
    """A link planted where the CA key goes is neither written through nor replaced."""
    s = settings(tmp_path)
    tls_dir = s.data_dir / "tls"
    tls_dir.mkdir(parents=True)
    target = tmp_path / "elsewhere"
    (tls_dir / "ca.key").symlink_to(target)
    with pytest.raises(TlsError):
        ensure_demo_tls(s)
    assert not target.exists()
    assert (tls_dir / "ca.key").is_symlink()


def test_bound_host_is_certified_and_ca_is_name_constrained(tmp_path: Path) -> None:
    s = settings(tmp_path, host="127.10.0.7", port=443)
    made = ensure_demo_tls(s)
    assert handshake(made.ca_cert, made.cert, made.key, "127.10.0.7").startswith("TLS")
    ca = x509.load_pem_x509_certificate(made.ca_cert.read_bytes())
    nc = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert {g.value for g in nc.value.permitted_subtrees or [] if isinstance(g, x509.DNSName)} >= {
        "localhost",
        "bootvault.test",
    }

    # The CA cannot certify a name it was not made for: a new server pair for another host is refused.
    (made.cert).unlink()
    (made.key).unlink()
    with pytest.raises(TlsError, match="cannot certify 192.0.2.10"):
        ensure_demo_tls(settings(tmp_path, host="192.0.2.10"))


def test_a_certificate_lacking_a_name_is_kept_with_a_warning(tmp_path: Path) -> None:
    ensure_demo_tls(settings(tmp_path))
    warnings: list[str] = []
    made = ensure_demo_tls(settings(tmp_path, host="127.0.0.9"), warnings)
    assert len(warnings) == 1 and "does not cover 127.0.0.9" in warnings[0], warnings
    assert made.cert.exists()


def test_wildcard_host_certifies_the_machine_name(tmp_path: Path) -> None:
    names = demo_names(settings(tmp_path, host="0.0.0.0"))
    assert socket.gethostname().lower() in names.dns
    assert ipaddress.ip_address("0.0.0.0") not in names.ips


def test_region_definition_forms_the_sdk_endpoint(tmp_path: Path) -> None:
    s = settings(tmp_path, region="local-1", realm_domain="example.test")
    assert endpoint_host(s) == "iaas.local-1.example.test"
    assert region_metadata(s) == {
        "realmKey": "bootvault",
        "realmDomainComponent": "example.test",
        "regionKey": "BVL",
        "regionIdentifier": "local-1",
    }


def test_check_pair_explains_bad_files(tmp_path: Path) -> None:
    a = ensure_demo_tls(settings(tmp_path / "a"))
    b = ensure_demo_tls(settings(tmp_path / "b"))
    check_pair(a.cert, a.key)
    with pytest.raises(TlsError, match="no such file"):
        check_pair(tmp_path / "missing.pem", a.key)
    with pytest.raises(TlsError, match="not a usable certificate and key"):
        check_pair(a.cert, b.key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not pem\n")
    with pytest.raises(TlsError):
        check_pair(garbage, a.key)
