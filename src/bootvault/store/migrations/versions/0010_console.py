"""operator console: sign-in credentials of console users, their sessions, failed sign-ins
(the rate limit's counters, per user name and per client address), and a covering index from
which the dashboard sums backup sizes by state and day without reading the table

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OCID = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "console_credentials",
        sa.Column("user_id", OCID, primary_key=True),
        sa.Column("tenancy_id", OCID, nullable=False),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("time_created", sa.DateTime, nullable=False),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", OCID, nullable=False, index=True),
        sa.Column("tenancy_id", OCID, nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("time_created", sa.DateTime, nullable=False),
        sa.Column("time_last_seen", sa.DateTime, nullable=False),
    )
    op.create_table(
        "console_sign_in_failures",
        sa.Column("subject", sa.String(300), primary_key=True),
        sa.Column("window_start", sa.DateTime, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_backups_state_sizes",
        "boot_volume_backups",
        ["tenancy_id", "compartment_id", "lifecycle_state", "time_created", "unique_size_bytes", "logical_size_bytes"],
    )


def downgrade() -> None:
    op.drop_index("ix_backups_state_sizes", table_name="boot_volume_backups")
    op.drop_table("console_sign_in_failures")
    op.drop_table("console_sessions")
    op.drop_table("console_credentials")
