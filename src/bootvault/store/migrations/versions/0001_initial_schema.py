"""initial schema

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa  # noqa: I001
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "api_keys",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("tenancy_id", sa.String(length=255), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "fingerprint"),
    )
    op.create_table(
        "boot_volume_backups",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("tenancy_id", sa.String(length=255), nullable=False),
        sa.Column("compartment_id", sa.String(length=255), nullable=False),
        sa.Column("boot_volume_id", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=False),
        sa.Column("lifecycle_state", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("source_type", sa.String(length=16), nullable=False),
        sa.Column("time_request_received", sa.DateTime(), nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("size_in_gbs", sa.Integer(), nullable=True),
        sa.Column("kms_key_id", sa.String(length=255), nullable=True),
        sa.Column("image_id", sa.String(length=255), nullable=True),
        sa.Column("freeform_tags", sa.JSON(), nullable=False),
        sa.Column("defined_tags", sa.JSON(), nullable=False),
        sa.Column("percent_complete", sa.Integer(), nullable=False),
        sa.Column("logical_size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("unique_size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("lifecycle_details", sa.Text(), nullable=True),
        sa.Column("source_boot_volume_backup_id", sa.String(length=255), nullable=True),
        sa.Column("expiration_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("boot_volume_backups", schema=None) as batch_op:
        batch_op.create_index("ix_backups_compartment", ["tenancy_id", "compartment_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_boot_volume_backups_boot_volume_id"), ["boot_volume_id"], unique=False
        )

    op.create_table(
        "boot_volumes",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("tenancy_id", sa.String(length=255), nullable=False),
        sa.Column("compartment_id", sa.String(length=255), nullable=False),
        sa.Column("availability_domain", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=False),
        sa.Column("lifecycle_state", sa.String(length=32), nullable=False),
        sa.Column("size_in_gbs", sa.Integer(), nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("freeform_tags", sa.JSON(), nullable=False),
        sa.Column("defined_tags", sa.JSON(), nullable=False),
        sa.Column("source_type", sa.String(length=32), nullable=True),
        sa.Column("source_id", sa.String(length=255), nullable=True),
        sa.Column("kms_key_id", sa.String(length=255), nullable=True),
        sa.Column("vpus_per_gb", sa.Integer(), nullable=False),
        sa.Column("is_hydrated", sa.Boolean(), nullable=False),
        sa.Column("image_id", sa.String(length=255), nullable=True),
        sa.Column("lifecycle_details", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("boot_volumes", schema=None) as batch_op:
        batch_op.create_index("ix_boot_volumes_compartment", ["tenancy_id", "compartment_id"], unique=False)

    op.create_table(
        "compartments",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("tenancy_id", sa.String(length=255), nullable=False),
        sa.Column("parent_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("compartments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_compartments_tenancy_id"), ["tenancy_id"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("tenancy_id", sa.String(length=255), nullable=False),
        sa.Column("resource_id", sa.String(length=255), nullable=False),
        sa.Column("lane", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_resource_id"), ["resource_id"], unique=False)
        batch_op.create_index("ix_jobs_state_lane", ["state", "lane"], unique=False)

    op.create_table(
        "kms_keys",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("tenancy_id", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("kms_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kms_keys_tenancy_id"), ["tenancy_id"], unique=False)

    op.create_table(
        "retry_tokens",
        sa.Column("tenancy_id", sa.String(length=255), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=255), nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("tenancy_id", "token", name="uq_retry_token"),
    )
    op.create_table(
        "tenancies",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("tenancy_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_tenancy_id"), ["tenancy_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_tenancy_id"))

    op.drop_table("users")
    op.drop_table("tenancies")
    op.drop_table("retry_tokens")
    with op.batch_alter_table("kms_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kms_keys_tenancy_id"))

    op.drop_table("kms_keys")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state_lane")
        batch_op.drop_index(batch_op.f("ix_jobs_resource_id"))

    op.drop_table("jobs")
    with op.batch_alter_table("compartments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compartments_tenancy_id"))

    op.drop_table("compartments")
    with op.batch_alter_table("boot_volumes", schema=None) as batch_op:
        batch_op.drop_index("ix_boot_volumes_compartment")

    op.drop_table("boot_volumes")
    with op.batch_alter_table("boot_volume_backups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_boot_volume_backups_boot_volume_id"))
        batch_op.drop_index("ix_backups_compartment")

    op.drop_table("boot_volume_backups")
    op.drop_table("api_keys")
