"""Analysts search in SQL: the rankers' text transform as data, logged query vectors, and the
content rule's texts closed to the ``analyst`` role (issue 20; docs/analysts.md).

1. ``ranker_text_transform``: a ranker's text transform (``ml.whitening``: partial whitening, or the
   identity) as one row per output component, ``component = x . weights - bias`` before unit
   normalisation. ``ranker_query_vector(ranker_id, text_vector)`` applies it in SQL, so a text
   vector of the text encoder lands in the ranker's space, where its photos' rows are: the same
   vector (up to float rounding) as ``Ranker.transform_query``. Publishing writes the rows
   (``service.store.ranker_rows.write_text_transform``); rankers published before this revision get
   them here, from their artifact folder's ``text_transform.npz`` (read with numpy, not through
   ``ml``, so this revision stays as it was when it ran). A ranker whose folder is gone has no rows
   and cannot be searched by the service either; the function then raises, naming it.
2. ``ranker_pair_scores``: each ranker's calibrated score of every expert-rated pair, written when
   it is published (``service.training.pair_scores``), beside the expert mean in SQL. Rankers
   published before this revision have none (scoring needs the ranker in Python): train anew.
3. ``search_log`` keeps each search's text-encoder vector (``text_vector``, ``text_model_id``) and
   its ``min_score``, so logged searches can be re-run in SQL under any ranker.
4. The content rule's texts: ``about_children`` on ``descriptions``, ``search_log`` and
   ``crowd_votes`` (the free query), set by the writers with ``service.policy.is_about_children``
   and backfilled here (like revision 0009: the rule lives in Python). NULL means "not checked".
   Views show such a text, and its vector, only when ``about_children IS FALSE``; otherwise the
   service's legal notice and NULL (fail closed). The analyst role loses the raw text columns
   (``descriptions.text``, ``search_log.query``, ``crowd_votes.query``) and
   ``description_embeddings``: column-level grants, so it reads those through the views only.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""
import logging
from pathlib import Path

import numpy as np
import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

NOTICE = "This image is unavailable in your country in compliance with local laws"  # service.policy.NOTICE


def _shown(flag: str, value: str) -> str:
    """A text as analysts see it: itself when the rule has cleared it, the notice otherwise."""
    return f"CASE WHEN {flag} IS FALSE THEN {value} ELSE '{NOTICE}' END"


RANKER_QUERY_VECTOR = """
CREATE FUNCTION ranker_query_vector(ranker_id integer, text_vector vector) RETURNS vector
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE AS $$
DECLARE
    q vector;
BEGIN
    -- <#> is the negative inner product: -(x <#> w) = x . w.
    SELECT l2_normalize(CAST(array_agg(-(text_vector <#> t.weights) - t.bias ORDER BY t.component) AS vector))
    INTO q
    FROM ranker_text_transform t
    WHERE t.model_id = ranker_id;
    IF q IS NULL THEN
        RAISE EXCEPTION 'ranker % has no rows in ranker_text_transform', ranker_id
            USING HINT = 'rankers get them when published; one published before migration 0010 whose '
                         'artifact folder was missing cannot be searched: train a new one';
    END IF;
    RETURN q;
END $$
"""

ANALYST_RATED_PAIRS_0003 = """
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
       r.description_id, {description} AS description, d.source AS description_source,
       e.expert_1, e.expert_2, e.expert_3, e.expert_mean,
       c.share AS crowd_share, c.yes AS crowd_yes, c.no AS crowd_no,
       coalesce(v.live_yes, 0) AS live_yes, coalesce(v.live_no, 0) AS live_no{extra}
FROM rated r
JOIN photos p ON p.id = r.photo_id
JOIN descriptions d ON d.id = r.description_id
LEFT JOIN experts e ON e.photo_id = r.photo_id AND e.description_id = r.description_id
LEFT JOIN crowd_ratings c ON c.photo_id = r.photo_id AND c.description_id = r.description_id
LEFT JOIN live_votes v ON v.photo_id = r.photo_id AND v.description_id = r.description_id
"""

# Same columns as in 0003 (the description is the notice where the rule flags it), one added at the end.
ANALYST_RATED_PAIRS = ANALYST_RATED_PAIRS_0003.replace("CREATE VIEW", "CREATE OR REPLACE VIEW").format(
    description=_shown("d.about_children", "d.text"),
    extra=",\n       d.about_children IS NOT FALSE AS description_withheld")

# One row per description and text-encoder vector (a description embedded by two text encoders has two).
ANALYST_DESCRIPTIONS = f"""
CREATE VIEW analyst_descriptions AS
SELECT d.id AS description_id, d.photo_id, p.file_name, p.split, d.source AS description_source,
       d.dataset_key, d.author, {_shown("d.about_children", "d.text")} AS description,
       d.about_children IS NOT FALSE AS withheld,
       de.model_id AS text_model_id,
       CASE WHEN d.about_children IS FALSE THEN de.embedding END AS text_vector
FROM descriptions d
LEFT JOIN photos p ON p.id = d.photo_id
LEFT JOIN description_embeddings de ON de.description_id = d.id
"""

ANALYST_SEARCHES = f"""
CREATE VIEW analyst_searches AS
SELECT s.id AS search_id, s.created_at, {_shown("s.about_children", "s.query")} AS query,
       s.about_children IS NOT FALSE AS withheld, s.blocked, s.min_score, s.n_results, s.photo_ids,
       s.model_id AS ranker_id, s.took_ms, s.text_model_id,
       CASE WHEN s.about_children IS FALSE THEN s.text_vector END AS text_vector
FROM search_log s
"""

ANALYST_LIVE_VOTES = f"""
CREATE VIEW analyst_live_votes AS
SELECT v.id AS vote_id, v.created_at, v.photo_id, p.file_name, v.description_id,
       CASE WHEN v.query IS NOT NULL THEN {_shown("v.about_children", "v.query")} END AS query,
       v.match, v.client
FROM crowd_votes v
JOIN photos p ON p.id = v.photo_id
"""

VIEWS = ("analyst_descriptions", "analyst_searches", "analyst_live_votes")

# What the analyst role reads of the tables that hold the rule's texts: every column but the text
# (and, for descriptions, their vectors: a sentence embedding can be inverted to much of its text).
ANALYST_COLUMNS = {
    "descriptions": "id, source, author, photo_id, dataset_key, created_at, about_children",
    "search_log": "id, blocked, n_results, photo_ids, model_id, took_ms, created_at, min_score, text_model_id, "
                  "about_children",
    "crowd_votes": "id, photo_id, description_id, match, client, created_at, about_children",
}
CLOSED_TABLES = ("description_embeddings",)


def _backfill_flags(conn, table: str, column: str) -> None:
    from service.policy import is_about_children

    rows = conn.execute(sa.text(f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL")).all()
    flagged = [row_id for row_id, text_ in rows if is_about_children(text_)]
    conn.execute(sa.text(f"UPDATE {table} SET about_children = (id = ANY(:ids)) WHERE {column} IS NOT NULL"),
                 {"ids": flagged})


def _backfill_transforms(conn) -> None:
    rankers = conn.execute(sa.text("SELECT id, dims, artifact_path FROM models WHERE kind = 'ranker'")).all()
    for model_id, dims, artifact_path in rankers:
        path = Path(artifact_path or "") / "text_transform.npz"
        if not artifact_path or not path.is_file():
            log.warning("ranker %s: no %s, so no text transform rows (it cannot be searched)", model_id, path)
            continue
        arrays = np.load(path)
        if np.isnan(float(arrays["power"])):  # IdentityText
            weights, bias = np.eye(dims, dtype=np.float32), np.zeros(dims)
        else:  # PartialWhitening: unit((x - mean) @ projection)
            weights = np.asarray(arrays["projection"], np.float32)
            bias = np.asarray(arrays["mean"], np.float64) @ weights.astype(np.float64)
        conn.execute(
            sa.text("INSERT INTO ranker_text_transform (model_id, component, weights, bias) "
                    "VALUES (:model_id, :component, CAST(:weights AS vector), :bias)"),
            [{"model_id": model_id, "component": c, "bias": float(bias[c]),
              "weights": "[" + ",".join(repr(float(v)) for v in weights[:, c]) + "]"} for c in range(weights.shape[1])])


def upgrade() -> None:
    op.create_table(
        "ranker_text_transform",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("component", sa.Integer(), nullable=False),
        sa.Column("weights", pgvector.sqlalchemy.VECTOR(), nullable=False),
        sa.Column("bias", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_ranker_text_transform_model_id_models"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_id", "component", name=op.f("pk_ranker_text_transform")),
    )
    op.execute(RANKER_QUERY_VECTOR)
    op.create_table(
        "ranker_pair_scores",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.BigInteger(), nullable=False),
        sa.Column("description_id", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("in_shortlist", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_ranker_pair_scores_model_id_models"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["photo_id"], ["photos.id"], name=op.f("fk_ranker_pair_scores_photo_id_photos"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["description_id"], ["descriptions.id"],
                                name=op.f("fk_ranker_pair_scores_description_id_descriptions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_id", "photo_id", "description_id", name=op.f("pk_ranker_pair_scores")),
    )
    op.add_column("search_log", sa.Column("text_vector", pgvector.sqlalchemy.VECTOR(), nullable=True))
    op.add_column("search_log", sa.Column("text_model_id", sa.Integer(), nullable=True))
    op.create_foreign_key(op.f("fk_search_log_text_model_id_models"), "search_log", "models",
                          ["text_model_id"], ["id"], ondelete="SET NULL")
    op.add_column("search_log", sa.Column("min_score", sa.Float(), nullable=True))
    for table in ("descriptions", "search_log", "crowd_votes"):
        op.add_column(table, sa.Column("about_children", sa.Boolean(), nullable=True))

    conn = op.get_bind()
    _backfill_transforms(conn)
    _backfill_flags(conn, "descriptions", "text")
    _backfill_flags(conn, "search_log", "query")
    _backfill_flags(conn, "crowd_votes", "query")

    op.execute(ANALYST_RATED_PAIRS)
    op.execute(ANALYST_DESCRIPTIONS)
    op.execute(ANALYST_SEARCHES)
    op.execute(ANALYST_LIVE_VOTES)
    for table, columns in ANALYST_COLUMNS.items():
        op.execute(f"REVOKE SELECT ON {table} FROM analyst")
        op.execute(f"GRANT SELECT ({columns}) ON {table} TO analyst")
    for table in CLOSED_TABLES:
        op.execute(f"REVOKE SELECT ON {table} FROM analyst")
    op.execute(f"GRANT SELECT ON ranker_text_transform, ranker_pair_scores, {', '.join(VIEWS)} TO analyst")


def downgrade() -> None:
    for table in (*ANALYST_COLUMNS, *CLOSED_TABLES):
        op.execute(f"REVOKE SELECT ON {table} FROM analyst")  # the column grants go with it
        op.execute(f"GRANT SELECT ON {table} TO analyst")
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW {view}")
    op.execute("DROP VIEW analyst_rated_pairs")
    op.execute(ANALYST_RATED_PAIRS_0003.format(description="d.text", extra=""))
    op.execute("GRANT SELECT ON analyst_rated_pairs TO analyst")
    for table in ("crowd_votes", "search_log", "descriptions"):
        op.drop_column(table, "about_children")
    op.drop_column("search_log", "min_score")
    op.drop_constraint(op.f("fk_search_log_text_model_id_models"), "search_log", type_="foreignkey")
    op.drop_column("search_log", "text_model_id")
    op.drop_column("search_log", "text_vector")
    op.drop_table("ranker_pair_scores")
    op.execute("DROP FUNCTION ranker_query_vector(integer, vector)")
    op.drop_table("ranker_text_transform")
