"""The language of each description, so an English query skips USE's side of the description match.

A query routed to MiniLM (English) matched descriptions in both spaces: MiniLM's, and USE
multilingual's so that a description in another language is found too. USE's side cost every
English search a USE encoding and a second vector search, yet for an English description it only
repeats what MiniLM's side finds. With the language stored, an English query searches USE's space
only among descriptions in other languages, and not at all where there are none (the demo; a
library of English captions). A query in another language still matches every description in USE's
space.

``language`` is ``ml.language``'s answer for the text (ISO 639-1, ``und`` for text without letters),
set by every writer from now on; NULL means not known, and such a description counts as another
language (searched in both spaces, as before). Existing dataset captions (``source`` ``dataset`` or
``test``, loaded by `withsense ingest dataset` from Flickr8k-format files) are English and marked so
here; other existing descriptions stay NULL. Analysts may read it, as every column but the text.
The partial index serves the count the search reads
(how many descriptions are in another language) and the scan of just those.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# Languages MiniLM reads (its own and text without letters, which routing serves as English).
OTHER_LANGUAGE = "language IS NULL OR language NOT IN ('en', 'und')"


def upgrade() -> None:
    op.add_column("descriptions", sa.Column("language", sa.Text(), nullable=True))
    op.execute("UPDATE descriptions SET language = 'en' WHERE source IN ('dataset', 'test')")
    op.create_index("ix_descriptions_other_language", "descriptions", ["photo_id"],
                    postgresql_where=sa.text(OTHER_LANGUAGE))
    # Analysts read every column of descriptions but the text (migrations 0010 and 0011).
    op.execute("GRANT SELECT (language) ON descriptions TO analyst")


def downgrade() -> None:
    op.execute("REVOKE SELECT (language) ON descriptions FROM analyst")
    op.drop_index("ix_descriptions_other_language", table_name="descriptions")
    op.drop_column("descriptions", "language")
