"""regions and cross-region copy: paired peer regions, one-time invites, the destination's map of
transfer ids to its own block ids, and work requests

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "region_peers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("ca_pem", sa.Text, nullable=True),
        sa.Column("secret_wrapped", sa.LargeBinary, nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "region_invites",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("time_created", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "xrc_blocks",
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("transfer_id", sa.String(64), primary_key=True),
        sa.Column("block_id", sa.String(64), nullable=False),
    )
    op.create_table(
        "work_requests",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("tenancy_id", sa.String(255), nullable=False),
        sa.Column("compartment_id", sa.String(255), nullable=False),
        sa.Column("operation_type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("percent_complete", sa.Float, nullable=False),
        sa.Column("time_accepted", sa.DateTime(), nullable=False),
        sa.Column("time_started", sa.DateTime(), nullable=True),
        sa.Column("time_finished", sa.DateTime(), nullable=True),
        sa.Column("time_updated", sa.DateTime(), nullable=False),
        sa.Column("resources", sa.JSON, nullable=False),
        sa.Column("errors", sa.JSON, nullable=False),
        sa.Column("logs", sa.JSON, nullable=False),
        sa.Column("source_region", sa.String(64), nullable=True),
        sa.Column("destination_region", sa.String(64), nullable=True),
        sa.Column("source_id", sa.String(255), nullable=True),
        sa.Column("target_id", sa.String(255), nullable=True, index=True),
        sa.Column("kms_key_id", sa.String(255), nullable=True),
        sa.Column("display_name", sa.String(255), nullable=True),
    )
    # CreateBootVolume's xrcKmsKeyId: the destination-region key of the volume's policy copies
    with op.batch_alter_table("boot_volumes") as batch:
        batch.add_column(sa.Column("xrc_kms_key_id", sa.String(255), nullable=True))
    op.create_index(
        "ix_work_requests_compartment", "work_requests", ["tenancy_id", "compartment_id", "time_accepted", "id"]
    )


def downgrade() -> None:
    with op.batch_alter_table("boot_volumes") as batch:
        batch.drop_column("xrc_kms_key_id")
    op.drop_index("ix_work_requests_compartment", table_name="work_requests")
    op.drop_table("work_requests")
    op.drop_table("xrc_blocks")
    op.drop_table("region_invites")
    op.drop_table("region_peers")
