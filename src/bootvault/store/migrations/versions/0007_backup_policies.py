"""backup policies, assignments and scheduled runs; retention lock and legal hold of backups

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OCID = sa.String(255)


def upgrade() -> None:
    with op.batch_alter_table("boot_volume_backups") as batch_op:
        batch_op.add_column(sa.Column("schedule_retention_seconds", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("retention_unit", sa.String(8), nullable=True))
        batch_op.add_column(sa.Column("retention_amount", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("is_retention_lock_enabled", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("is_prevent_deletion_enabled", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("is_indefinite_retention_enabled", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("time_retention_expires_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_boot_volume_backups_expiration_time", ["expiration_time"])
    op.create_table(
        "volume_backup_policies",
        sa.Column("id", OCID, primary_key=True),
        sa.Column("tenancy_id", OCID, nullable=False),
        sa.Column("compartment_id", OCID, nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("schedules", sa.JSON(), nullable=False),
        sa.Column("destination_region", sa.String(64), nullable=True),
        sa.Column("time_created", sa.DateTime(), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("freeform_tags", sa.JSON(), nullable=False),
        sa.Column("defined_tags", sa.JSON(), nullable=False),
    )
    op.create_index("ix_policies_compartment", "volume_backup_policies", ["tenancy_id", "compartment_id"])
    op.create_table(
        "volume_backup_policy_assignments",
        sa.Column("id", OCID, primary_key=True),
        sa.Column("tenancy_id", OCID, nullable=False),
        sa.Column("asset_id", OCID, nullable=False, unique=True),
        sa.Column("policy_id", OCID, nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("xrc_kms_key_id", OCID, nullable=True),
        sa.Column("next_run_at", sa.DateTime(), nullable=True),
    )
    op.create_index(
        "ix_volume_backup_policy_assignments_policy_id", "volume_backup_policy_assignments", ["policy_id"]
    )
    op.create_index(
        "ix_volume_backup_policy_assignments_next_run_at", "volume_backup_policy_assignments", ["next_run_at"]
    )
    op.create_table(
        "scheduled_runs",
        sa.Column("asset_id", OCID, primary_key=True),
        sa.Column("due_time", sa.DateTime(), primary_key=True),
        sa.Column("assignment_id", OCID, nullable=False),
        sa.Column("policy_id", OCID, nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("backup_id", OCID, nullable=True),
        sa.Column("skipped_reason", sa.Text(), nullable=True),
        sa.Column("time_queued", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduled_runs")
    op.drop_table("volume_backup_policy_assignments")
    op.drop_table("volume_backup_policies")
    with op.batch_alter_table("boot_volume_backups") as batch_op:
        batch_op.drop_index("ix_boot_volume_backups_expiration_time")
        for name in (
            "time_retention_expires_at",
            "is_indefinite_retention_enabled",
            "is_prevent_deletion_enabled",
            "is_retention_lock_enabled",
            "retention_amount",
            "retention_unit",
            "schedule_retention_seconds",
        ):
            batch_op.drop_column(name)
