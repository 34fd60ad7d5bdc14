"""A photo's place, camera and uploader beside each of its vectors, so a filtered search reads one row.

A search filtered by place (camera, uploader) walked the vector graph and, for every vector it met,
probed ``photos`` (and, for a description's vector, ``descriptions`` then ``photos``) to test the
filter: at a million photos a 10 % place filter met ~1,000 vectors per candidate search and spent
most of its 56 ms on those probes (docs/scaling.md). From this revision each row of
``photo_embeddings`` and ``description_embeddings`` carries ``facets``: its photo's filterable
values as ``photo_facets(place, camera, uploader)`` makes them (``{place:paris,camera:nikon d750}``,
lower-cased, unset ones left out), tested in the row the index scan already reads
(``facets @> photo_facets(<the search's filters>)``). A GIN index per table serves a filter that
keeps few photos (one uploader's), where a graph walk would pass most of the library by.

Triggers keep the copies equal to ``photos``: a vector row takes its photo's committed facets when
it is written, and an edit of place, camera or uploader rewrites the facets of the photo's vector
rows and of its descriptions' vector rows. A row written by a transaction still open when an edit
commits is the writers' to settle (service/store/facets.py says how each does). The expression
indexes of 0014 on ``photos`` served only the old filters and go.

The backfill rewrites every vector row once (not timed at a million photos here; the rows are
~3 kB, so plan it like the rewrite under "Vectors inline" in docs/scaling.md).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

TABLES = ("photo_embeddings", "description_embeddings")
OLD_FILTER_COLUMNS = ("place", "camera", "uploader")  # 0014's expression indexes on photos

PHOTO_FACETS = """
CREATE FUNCTION photo_facets(place text DEFAULT NULL, camera text DEFAULT NULL, uploader text DEFAULT NULL)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN array_remove(ARRAY['place:' || lower(place), 'camera:' || lower(camera),
                          'uploader:' || lower(uploader)], NULL)
"""

PHOTO_VECTOR_FACETS = """
CREATE FUNCTION photo_vector_facets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT photo_facets(p.place, p.camera, p.uploader) INTO NEW.facets
    FROM photos p WHERE p.id = NEW.photo_id;
    RETURN NEW;
END $$
"""

DESCRIPTION_VECTOR_FACETS = """
CREATE FUNCTION description_vector_facets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT photo_facets(p.place, p.camera, p.uploader) INTO NEW.facets
    FROM descriptions d JOIN photos p ON p.id = d.photo_id
    WHERE d.id = NEW.description_id;
    NEW.facets := coalesce(NEW.facets, '{}');  -- a text rated with no photo of its own
    RETURN NEW;
END $$
"""

EDITED_PHOTO_FACETS = """
CREATE FUNCTION edited_photo_facets() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_facets text[] := photo_facets(NEW.place, NEW.camera, NEW.uploader);
BEGIN
    UPDATE photo_embeddings e SET facets = new_facets WHERE e.photo_id = NEW.id;
    UPDATE description_embeddings de SET facets = new_facets
    FROM descriptions d WHERE d.photo_id = NEW.id AND de.description_id = d.id;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute(PHOTO_FACETS)
    for table in TABLES:
        op.add_column(table, sa.Column("facets", ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False))
    op.execute("""UPDATE photo_embeddings e SET facets = photo_facets(p.place, p.camera, p.uploader)
                  FROM photos p WHERE p.id = e.photo_id""")
    op.execute("""UPDATE description_embeddings de SET facets = photo_facets(p.place, p.camera, p.uploader)
                  FROM descriptions d JOIN photos p ON p.id = d.photo_id WHERE d.id = de.description_id""")
    for table in TABLES:
        op.create_index(f"ix_{table}_facets", table, ["facets"], postgresql_using="gin")
    op.execute(PHOTO_VECTOR_FACETS)
    op.execute(DESCRIPTION_VECTOR_FACETS)
    op.execute(EDITED_PHOTO_FACETS)
    op.execute("""CREATE TRIGGER photo_vector_facets BEFORE INSERT ON photo_embeddings
                  FOR EACH ROW EXECUTE FUNCTION photo_vector_facets()""")
    op.execute("""CREATE TRIGGER description_vector_facets BEFORE INSERT ON description_embeddings
                  FOR EACH ROW EXECUTE FUNCTION description_vector_facets()""")
    op.execute("""CREATE TRIGGER edited_photo_facets AFTER UPDATE OF place, camera, uploader ON photos
                  FOR EACH ROW WHEN (photo_facets(OLD.place, OLD.camera, OLD.uploader)
                                     IS DISTINCT FROM photo_facets(NEW.place, NEW.camera, NEW.uploader))
                  EXECUTE FUNCTION edited_photo_facets()""")
    for column in OLD_FILTER_COLUMNS:
        op.drop_index(f"ix_photos_lower_{column}", table_name="photos")


def downgrade() -> None:
    for column in OLD_FILTER_COLUMNS:
        op.create_index(f"ix_photos_lower_{column}", "photos", [sa.text(f"lower({column})")])
    op.execute("DROP TRIGGER edited_photo_facets ON photos")
    op.execute("DROP TRIGGER description_vector_facets ON description_embeddings")
    op.execute("DROP TRIGGER photo_vector_facets ON photo_embeddings")
    for name in ("edited_photo_facets", "description_vector_facets", "photo_vector_facets"):
        op.execute(f"DROP FUNCTION {name}()")
    for table in TABLES:
        op.drop_index(f"ix_{table}_facets", table_name=table)
        op.drop_column(table, "facets")
    op.execute("DROP FUNCTION photo_facets(text, text, text)")
