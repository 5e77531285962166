"""HTTPS: checking an operator's certificate and key, and the demo's local CA (`serve --tls-demo`).

The demo CA is made once per data directory and kept in `<data dir>/tls/`: `ca.pem` is what
clients trust (the oci CLI's `--cert-bundle`, `REQUESTS_CA_BUNDLE`), `server.pem`/`server.key`
are what the server presents. Every file is created owner-only (0600), exclusively and without
following links: existing files are used as they are, never replaced. Remove `server.pem` and
`server.key` to have a new server certificate issued by the same CA (for other names, or when it
expires); remove the whole directory for a new CA.

The CA carries name constraints: it can only certify the names it was made for (localhost, the
loopback addresses, the bound host and the realm domain), so trusting it trusts nothing else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bootvault.config import Settings
from bootvault.fsutil import atomic_path, make_private_dir, write_private

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REALM_KEY = "bootvault"  # must not be a realm the SDK knows (oc1...), or the SDK keeps Oracle's domain
REGION_KEY = "BVL"
CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_WARNING = dt.timedelta(days=14)
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}


class TlsError(Exception):
    """A certificate or key that cannot be used, with what to do about it."""


def check_pair(cert: Path, key: Path) -> None:
    """Load cert and key as the server will, so a bad pair stops `serve` with a message
    instead of a traceback from the HTTP server."""
    for p in (cert, key):
        if not p.is_file():
            raise TlsError(f"{p}: no such file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise TlsError(f"{cert} and {key} are not a usable certificate and key: {exc.reason or exc}") from exc
    except OSError as exc:
        raise TlsError(f"cannot read {cert} or {key}: {exc}") from exc


def endpoint_host(settings: Settings) -> str:
    """The host name the OCI SDKs build for this region's Core Services (iaas.<region>.<domain>)."""
    return f"iaas.{settings.region}.{settings.realm_domain}".lower()


def region_metadata(settings: Settings) -> dict[str, str]:
    """The SDK's region definition (OCI_REGION_METADATA, or an entry of ~/.oci/regions-config.json)."""
    return {
        "realmKey": REALM_KEY,
        "realmDomainComponent": settings.realm_domain,
        "regionKey": REGION_KEY,
        "regionIdentifier": settings.region,
    }


@dataclass
class Names:
    dns: list[str] = field(default_factory=list)
    ips: list[IPAddress] = field(default_factory=list)

    def add(self, name: str) -> None:
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            if name.lower() not in self.dns:
                self.dns.append(name.lower())
            return
        if ip not in self.ips:
            self.ips.append(ip)


def demo_names(settings: Settings) -> Names:
    """What the demo certificate is for: localhost and the loopback addresses, the bound host
    (the machine's name too when bound to all addresses) and the region's endpoint name."""
    names = Names()
    for n in ("localhost", "127.0.0.1", "::1", endpoint_host(settings)):
        names.add(n)
    if settings.host in _WILDCARD_HOSTS:
        names.add(socket.gethostname())
    else:
        names.add(settings.host)
    return names


@dataclass(frozen=True)
class DemoTls:
    ca_cert: Path
    cert: Path
    key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _create(path: Path, data: bytes) -> None:
    """Write a new owner-only file that appears whole or not at all and never replaces one."""
    try:
        with atomic_path(path, replace=False) as tmp:
            write_private(tmp, data)
    except FileExistsError as exc:
        raise TlsError(f"{path} appeared while it was being created; start again") from exc


def _sans(names: Names) -> list[x509.GeneralName]:
    return [x509.DNSName(n) for n in names.dns] + [x509.IPAddress(ip) for ip in names.ips]


def _constraints(names: Names) -> x509.NameConstraints:
    dns = [x509.DNSName(n) for n in names.dns]
    nets: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
    ]
    for ip in names.ips:
        if not ip.is_loopback:
            nets.append(x509.IPAddress(ipaddress.ip_network(ip)))
    return x509.NameConstraints(permitted_subtrees=dns + nets, excluded_subtrees=None)


def _make_ca(names: Names, realm_domain: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bootvault demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"bootvault local CA {now:%Y-%m-%d %H:%M:%S}"),
        ]
    )
    permitted = Names(dns=[*names.dns, realm_domain.lower()], ips=names.ips)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(_constraints(permitted), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """Digital signatures (ECDSA TLS), plus certificate and CRL signing for the CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, names: Names
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names.dns[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_sans(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


_NETWORKS = (ipaddress.IPv4Network, ipaddress.IPv6Network)  # what a name constraint's IPAddress holds


def _permits(ca_cert: x509.Certificate, names: Names) -> list[str]:
    """The names of `names` that the CA's name constraints do not permit."""
    try:
        nc = ca_cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return []
    permitted = nc.permitted_subtrees or []
    domains = [g.value.lower() for g in permitted if isinstance(g, x509.DNSName)]
    nets = [g.value for g in permitted if isinstance(g, x509.IPAddress) and isinstance(g.value, _NETWORKS)]
    missing = [n for n in names.dns if not any(n == d or n.endswith("." + d) for d in domains)]
    missing += [str(ip) for ip in names.ips if not any(ip in net for net in nets)]
    return missing


def _uncovered(cert: x509.Certificate, names: Names) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [*names.dns, *map(str, names.ips)]
    dns = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    ips = set(san.get_values_for_type(x509.IPAddress))
    return [n for n in names.dns if n not in dns] + [str(ip) for ip in names.ips if ip not in ips]


def _pair_state(cert: Path, key: Path) -> bool:
    """True when both exist, False when neither does; a lone one is an error (never replaced)."""
    have = [os.path.lexists(cert), os.path.lexists(key)]
    if all(have):
        return True
    if not any(have):
        return False
    present, absent = (cert, key) if have[0] else (key, cert)
    raise TlsError(f"{present} exists without {absent}; remove it to have both made anew")


def ensure_demo_tls(settings: Settings, warn: list[str] | None = None) -> DemoTls:
    """The demo's CA and server certificate in <data dir>/tls, made when missing. Reasons to act
    (names the existing certificate lacks, an expiry near) are appended to `warn`."""
    tls_dir = make_private_dir(settings.data_dir / "tls")
    out = DemoTls(tls_dir / "ca.pem", tls_dir / "server.pem", tls_dir / "server.key")
    ca_key_path = tls_dir / "ca.key"
    names = demo_names(settings)
    warn = warn if warn is not None else []

    if _pair_state(out.ca_cert, ca_key_path):
        ca_cert = x509.load_pem_x509_certificate(out.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TlsError(f"{ca_key_path} is not the EC key bootvault makes")
    else:
        ca_key, ca_cert = _make_ca(names, settings.realm_domain)
        _create(ca_key_path, _pem_key(ca_key))
        _create(out.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))

    if _pair_state(out.cert, out.key):
        cert = x509.load_pem_x509_certificate(out.cert.read_bytes())
        missing = _uncovered(cert, names)
        if missing:
            warn.append(
                f"{out.cert} does not cover {', '.join(missing)}: remove {out.cert.name} and "
                f"{out.key.name} in {tls_dir} to have a new one issued"
            )
        if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_WARNING:
            warn.append(
                f"{out.cert} expires {cert.not_valid_after_utc:%Y-%m-%d}: remove {out.cert.name} "
                f"and {out.key.name} in {tls_dir} to have a new one issued"
            )
    else:
        refused = _permits(ca_cert, names)
        if refused:
            raise TlsError(
                f"the demo CA in {tls_dir} was made for other names and cannot certify "
                f"{', '.join(refused)}: remove {tls_dir} to make a new CA (clients must then trust "
                "the new ca.pem)"
            )
        key, cert = _issue(ca_key, ca_cert, names)
        _create(out.key, _pem_key(key))
        _create(out.cert, cert.public_bytes(serialization.Encoding.PEM))
    check_pair(out.cert, out.key)
    return out
