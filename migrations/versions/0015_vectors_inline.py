"""Vectors stored in their rows, not in TOAST tables.

PostgreSQL moves a row's wide values out of line (its TOAST table) once the row passes 2 kB: a
ranker's photo row (a 384-d joint vector and a 384-d bridge vector, ~3.1 kB) kept its bridge there,
and a description's USE vector (512-d, 2,056 bytes) went there whole. The shortlist reads both for
every candidate (service/search/shortlist.py), so each one cost a TOAST index lookup and a second
page: on the demo library the statement touched 5,677 buffers and ran in 7.3 ms, and with the rows
inline it ran in 5.0 ms (same machine, same query). ``toast_tuple_target`` raised to its maximum
keeps rows up to ~8 kB whole; the image-feature rows (~18 kB) still go out of line, as they must.

The setting applies to rows written from now on: every ranker published afterwards writes its photo
rows inline, and so does every new description. Existing rows stay where they are; docs/scaling.md
("Vectors inline") has the statements that move them, for an operator who wants that now.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TABLES = ("photo_embeddings", "description_embeddings")
MAX_TARGET = 8160  # PostgreSQL's upper bound for toast_tuple_target (an 8 kB page less its header)


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (toast_tuple_target = {MAX_TARGET})")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (toast_tuple_target)")
