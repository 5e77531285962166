"""backup lists: one index per sort order (and per sort order under a state or volume filter), so
a page of a compartment with 100,000 backups reads its 25 rows in order instead of sorting

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# (name, leading columns); each index ends with the sort column and id, as store/paging.py orders.
PREFIXES = [
    ("ix_backups_{}", ["tenancy_id", "compartment_id"]),
    ("ix_backups_state_{}", ["tenancy_id", "compartment_id", "lifecycle_state"]),
    ("ix_backups_volume_{}", ["boot_volume_id"]),
    ("ix_backups_volume_state_{}", ["boot_volume_id", "lifecycle_state"]),
]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, prefix in PREFIXES:
        op.create_index(name.format("time"), "boot_volume_backups", [*prefix, "time_created", "id"])
        # PostgreSQL sorts names bytewise (COLLATE "C", see store/paging.py): so must its index.
        display_name = sa.text('display_name COLLATE "C"') if postgres else "display_name"
        op.create_index(name.format("name"), "boot_volume_backups", [*prefix, display_name, "id"])
    # Both were prefixes of the indexes above.
    op.drop_index("ix_backups_compartment", table_name="boot_volume_backups")
    op.drop_index("ix_boot_volume_backups_boot_volume_id", table_name="boot_volume_backups")


def downgrade() -> None:
    op.create_index("ix_boot_volume_backups_boot_volume_id", "boot_volume_backups", ["boot_volume_id"])
    op.create_index("ix_backups_compartment", "boot_volume_backups", ["tenancy_id", "compartment_id"])
    for name, _ in reversed(PREFIXES):
        op.drop_index(name.format("name"), table_name="boot_volume_backups")
        op.drop_index(name.format("time"), table_name="boot_volume_backups")
