"""Tenancies, users, API keys, compartments and encryption keys: the admin side of identity."""

from __future__ import annotations

from dataclasses import dataclass

from bootvault.domain import ocid
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


def create_tenancy(ctx: Context, name: str, key: tuple[bytes, bytes, str]) -> NewTenancy:
    """A tenancy, its admin user and one API key. `key` is (private PEM, public PEM, fingerprint)."""
    private_pem, public_pem, fingerprint = key
    tenancy_id = ocid.mint("tenancy")
    user_id = ocid.mint("user")
    with ctx.db.write() as conn:
        repo.create_tenancy(conn, tenancy_id, name)
        repo.create_user(conn, user_id, tenancy_id, f"{name}-admin")
        repo.add_api_key(conn, ApiKey(tenancy_id, user_id, fingerprint, public_pem.decode()))
    return NewTenancy(tenancy_id, user_id, fingerprint, private_pem)


def create_compartment(ctx: Context, parent_id: str, name: str) -> str:
    with ctx.db.write() as conn:
        parent = repo.get_compartment(conn, parent_id)
        if parent is None:
            raise NotFound(f"Parent compartment {parent_id} not found.")
        comp_id = ocid.mint("compartment")
        repo.create_compartment(conn, Compartment(comp_id, parent.tenancy_id, parent.id, name, now()))
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


def find_api_key(ctx: Context, tenancy_id: str, user_id: str, fingerprint: str) -> ApiKey | None:
    with ctx.db.read() as conn:
        return repo.find_api_key(conn, tenancy_id, user_id, fingerprint)


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
