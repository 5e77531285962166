"""customer key material in the database (wrapped by the master key); jobs carry their AD

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kms_keys") as batch_op:
        batch_op.add_column(sa.Column("wrapped_key", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("availability_domain", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("availability_domain")
    with op.batch_alter_table("kms_keys") as batch_op:
        batch_op.drop_column("wrapped_key")
