"""Tenancies, users, API keys, compartments and encryption keys: the admin side of identity."""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bootvault.domain import ocid
from bootvault.domain.apikeys import fingerprint_of
from bootvault.domain.errors import NotFound, RelatedNotFound
from bootvault.domain.models import ApiKey, Compartment
from bootvault.service.context import Caller, Context
from bootvault.store import identity as repo
from bootvault.store.common import now


@dataclass
class NewTenancy:
    tenancy_id: str
    user_id: str
    fingerprint: str
    private_key_pem: bytes


def generate_api_key() -> tuple[bytes, bytes, str]:
    """(private key PEM PKCS8 unencrypted, public key PEM, fingerprint) of a new 2048-bit RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem, fingerprint_of(key.public_key())


def create_tenancy(ctx: Context, name: str, key: tuple[bytes, bytes, str]) -> NewTenancy:
    """A tenancy, its admin user and one API key. `key` is (private PEM, public PEM, fingerprint)."""
    private_pem, public_pem, fingerprint = key
    tenancy_id = ocid.mint("tenancy")
    user_id = ocid.mint("user")
    with ctx.db.write() as conn:
        repo.create_tenancy(conn, tenancy_id, name)
        repo.create_user(conn, user_id, tenancy_id, f"{name}-admin")
        repo.add_api_key(conn, ApiKey(tenancy_id, user_id, fingerprint, public_pem.decode()))
        _identity_changed(ctx, conn)
    return NewTenancy(tenancy_id, user_id, fingerprint, private_pem)


def create_compartment(ctx: Context, parent_id: str, name: str) -> str:
    with ctx.db.write() as conn:
        parent = repo.get_compartment(conn, parent_id)
        if parent is None:
            raise NotFound(f"Parent compartment {parent_id} not found.")
        comp_id = ocid.mint("compartment")
        repo.create_compartment(conn, Compartment(comp_id, parent.tenancy_id, parent.id, name, now()))
        _identity_changed(ctx, conn)
    return comp_id


def create_kms_key(ctx: Context, compartment_id: str, display_name: str) -> str:
    """A key held by the local key provider, usable as kmsKeyId within its tenancy."""
    with ctx.db.write() as conn:
        comp = repo.get_compartment(conn, compartment_id)
        if comp is None:
            raise NotFound(f"Compartment {compartment_id} not found.")
        key_id = ocid.mint("key", ctx.settings.region)
        repo.create_kms_key(conn, key_id, comp.tenancy_id, display_name, ctx.keys.new_wrapped_key(key_id))
    return key_id


def _identity_changed(ctx: Context, conn: object) -> None:
    """Identity is global: paired regions get the change (service/regions.py)."""
    from bootvault.service.regions import queue_identity_sync  # regions imports this module's users

    queue_identity_sync(ctx, conn)


API_KEY_CACHE_MAX = 10_000


def find_api_key(ctx: Context, tenancy_id: str, user_id: str, fingerprint: str) -> ApiKey | None:
    """The registered key, read from the database; a key found is remembered for
    `api_key_cache_seconds` (see cached_api_key). Unknown keys are never remembered, so a key
    registered a moment ago works at once."""
    with ctx.db.read_one() as conn:
        found = repo.find_api_key(conn, tenancy_id, user_id, fingerprint)
    ttl = ctx.settings.api_key_cache_seconds
    if found is not None and ttl > 0:
        cache = ctx.api_key_cache
        if len(cache) >= API_KEY_CACHE_MAX:
            cache.clear()
        cache[(tenancy_id, user_id, fingerprint)] = (found, time.monotonic() + ttl)
    return found


def cached_api_key(ctx: Context, tenancy_id: str, user_id: str, fingerprint: str) -> ApiKey | None:
    """The key if find_api_key found it less than `api_key_cache_seconds` ago; otherwise None
    (then ask find_api_key). Needs no database, so it can run on the event loop."""
    entry = ctx.api_key_cache.get((tenancy_id, user_id, fingerprint))
    if entry is None or entry[1] < time.monotonic():
        return None
    key: ApiKey = entry[0]
    return key


def require_compartment(conn: object, caller: Caller, compartment_id: str, *, in_body: bool) -> Compartment:
    """The compartment if the caller's tenancy owns it; otherwise a not-found error.

    Path and query references answer 404 NotAuthorizedOrNotFound; body references answer
    RelatedResourceNotAuthorizedOrNotFound, so a foreign tenancy's ids are indistinguishable
    from ids that never existed."""
    comp = repo.get_compartment(conn, compartment_id)  # type: ignore[arg-type]
    if comp is None or comp.tenancy_id != caller.tenancy_id:
        if in_body:
            raise RelatedNotFound(f"Compartment {compartment_id} not found or not authorized.")
        raise NotFound()
    return comp


def require_kms_key(conn: object, caller: Caller, kms_key_id: str | None) -> None:
    if kms_key_id is None:
        return
    if repo.kms_key_tenancy(conn, kms_key_id) != caller.tenancy_id:  # type: ignore[arg-type]
        raise RelatedNotFound(f"kmsKeyId {kms_key_id} not found or not authorized.")
