"""Read-only role ``analyst`` and the documented views (docs/analysts.md).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# One row per rated (photo, description) pair, whoever rated it: the three expert scores and their
# mean, the crowd share and counts from the dataset, and live votes from the API.
ANALYST_RATED_PAIRS = """
CREATE VIEW analyst_rated_pairs AS
WITH experts AS (
    SELECT photo_id, description_id,
           max(score) FILTER (WHERE expert_no = 1) AS expert_1,
           max(score) FILTER (WHERE expert_no = 2) AS expert_2,
           max(score) FILTER (WHERE expert_no = 3) AS expert_3,
           avg(score)::float8 AS expert_mean
    FROM expert_ratings
    GROUP BY photo_id, description_id
), live_votes AS (
    SELECT photo_id, description_id,
           count(*) FILTER (WHERE match) AS live_yes,
           count(*) FILTER (WHERE NOT match) AS live_no
    FROM crowd_votes
    WHERE description_id IS NOT NULL
    GROUP BY photo_id, description_id
), rated AS (
    SELECT photo_id, description_id FROM experts
    UNION SELECT photo_id, description_id FROM crowd_ratings
    UNION SELECT photo_id, description_id FROM live_votes
)
SELECT r.photo_id, p.file_name, p.split,
       r.description_id, d.text AS description, d.source AS description_source,
       e.expert_1, e.expert_2, e.expert_3, e.expert_mean,
       c.share AS crowd_share, c.yes AS crowd_yes, c.no AS crowd_no,
       coalesce(v.live_yes, 0) AS live_yes, coalesce(v.live_no, 0) AS live_no
FROM rated r
JOIN photos p ON p.id = r.photo_id
JOIN descriptions d ON d.id = r.description_id
LEFT JOIN experts e ON e.photo_id = r.photo_id AND e.description_id = r.description_id
LEFT JOIN crowd_ratings c ON c.photo_id = r.photo_id AND c.description_id = r.description_id
LEFT JOIN live_votes v ON v.photo_id = r.photo_id AND v.description_id = r.description_id
"""

# Photos with every vector stored for them, named by the model that made it.
ANALYST_PHOTO_EMBEDDINGS = """
CREATE VIEW analyst_photo_embeddings AS
SELECT p.id AS photo_id, p.file_name, p.split,
       m.id AS model_id, m.kind AS model_kind, m.name AS model_name, m.version AS model_version,
       m.active AS model_active, vector_dims(pe.embedding) AS dims, pe.embedding
FROM photo_embeddings pe
JOIN photos p ON p.id = pe.photo_id
JOIN models m ON m.id = pe.model_id
"""

CREATE_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'analyst') THEN
        CREATE ROLE analyst LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END $$
"""

DROP_ROLE = """
DO $$
BEGIN
    DROP ROLE IF EXISTS analyst;
EXCEPTION WHEN dependent_objects_still_exist THEN
    -- Another database of this cluster still grants to the role: leave it to that database.
    NULL;
END $$
"""


def upgrade() -> None:
    op.execute(ANALYST_RATED_PAIRS)
    op.execute(ANALYST_PHOTO_EMBEDDINGS)
    op.execute(CREATE_ROLE)
    op.execute("ALTER ROLE analyst SET default_transaction_read_only = on")
    op.execute("GRANT USAGE ON SCHEMA public TO analyst")
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst")
    # Tables added by later migrations are readable too, without a grant in each of them.
    op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO analyst")
    op.execute("REVOKE SELECT ON alembic_version FROM analyst")


def downgrade() -> None:
    op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM analyst")
    op.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM analyst")
    op.execute("REVOKE USAGE ON SCHEMA public FROM analyst")
    op.execute(DROP_ROLE)
    op.execute("DROP VIEW IF EXISTS analyst_photo_embeddings")
    op.execute("DROP VIEW IF EXISTS analyst_rated_pairs")
