"""The analyst role reads the documented views, cannot write, and reads neither the texts the content
rule withholds nor anything secret. Every SQL example of docs/analysts.md: tests/test_analyst_docs.py."""
import re

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.helpers import analyst_engine


@pytest.fixture(scope="module")
def analyst(loaded):
    with loaded["engine"].begin() as conn:  # one logged search, so the search_log example has a row
        conn.execute(text("INSERT INTO search_log (query, blocked, n_results, took_ms) VALUES ('a dog', false, 5, 12.5)"))
    engine = analyst_engine(loaded["settings"].database_url)
    yield engine
    engine.dispose()


def test_rated_pairs_view(analyst, loaded):
    with analyst.connect() as conn:
        rows = conn.execute(text("SELECT * FROM analyst_rated_pairs")).mappings().all()
    with_experts = [r for r in rows if r["expert_mean"] is not None]
    assert len(with_experts) == 67  # 201 expert rows = 67 pairs x 3 experts
    for r in with_experts:
        scores = [r["expert_1"], r["expert_2"], r["expert_3"]]
        assert all(1 <= s <= 4 for s in scores)
        assert r["expert_mean"] == pytest.approx(sum(scores) / 3)
    assert sum(r["crowd_share"] is not None for r in rows) == 77
    assert all(r["description"] for r in rows)


def test_photo_embeddings_view(analyst):
    with analyst.connect() as conn:
        kinds = dict(conn.execute(text(
            "SELECT model_kind, count(*) FROM analyst_photo_embeddings GROUP BY model_kind")).all())
    assert kinds == {"encoder": 16, "ranker": 16}


def test_nearest_neighbours_by_sql(analyst):
    with analyst.connect() as conn:
        rows = conn.execute(text(
            """SELECT b.photo_id, a.embedding <=> b.embedding AS distance
               FROM analyst_photo_embeddings a JOIN analyst_photo_embeddings b USING (model_id)
               WHERE a.model_kind = 'ranker' AND a.photo_id = (SELECT min(p.id) FROM photos p)
               ORDER BY distance LIMIT 3""")).all()
    assert rows[0].distance == pytest.approx(0.0, abs=1e-6)
    assert rows[1].distance > 0


@pytest.mark.parametrize("statement", [
    "INSERT INTO descriptions (text, source) VALUES ('x', 'user')",
    "UPDATE photos SET place = 'x'",
    "DELETE FROM expert_ratings",
    "TRUNCATE search_log",
    "CREATE TABLE mine (id int)",
    "DROP VIEW analyst_rated_pairs",
    "SELECT * FROM alembic_version",
])
def test_analyst_cannot_write(analyst, statement):
    with pytest.raises(DBAPIError) as info:
        with analyst.begin() as conn:
            conn.execute(text(statement))
    assert "permission denied" in str(info.value) or "read-only" in str(info.value)


# What a column may not be called where the analyst role can read it: issue 17's users, keys and
# sessions must be revoked from the role (ALTER DEFAULT PRIVILEGES in migration 0003 grants new tables).
SECRET_COLUMN = re.compile(r"hash|token|secret|passw|session|salt|api_?key", re.IGNORECASE)


@pytest.mark.parametrize("statement", [
    "SELECT text FROM descriptions",
    "SELECT * FROM descriptions",
    "SELECT query FROM search_log",
    "SELECT * FROM search_log",
    "SELECT query FROM crowd_votes",
    "SELECT embedding FROM description_embeddings",
    "SELECT * FROM pg_authid",
])
def test_analyst_cannot_read_raw_texts(analyst, statement):
    """The texts the content rule may flag, and their vectors, are read through the views only."""
    with pytest.raises(DBAPIError, match="permission denied"):
        with analyst.connect() as conn:
            conn.execute(text(statement))


def test_analyst_reads_the_other_columns(analyst):
    with analyst.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM descriptions WHERE about_children")).scalar() > 0
        assert conn.execute(text("SELECT DISTINCT language FROM descriptions")).scalars().all() == ["en"]
        assert conn.execute(text("SELECT count(id), count(blocked) FROM search_log")).one()[0] >= 1
        assert conn.execute(text("SELECT count(DISTINCT component) FROM ranker_text_transform")).scalar() == 384


def test_views_show_the_notice_for_texts_about_children(analyst, loaded):
    from service.policy import NOTICE, is_about_children

    with analyst.connect() as conn:
        pairs = conn.execute(text("SELECT description, description_withheld FROM analyst_rated_pairs")).all()
        descriptions = conn.execute(text(
            "SELECT DISTINCT ON (description_id) description, withheld, text_vector IS NULL AS no_vector "
            "FROM analyst_descriptions ORDER BY description_id, text_model_id")).all()
    with loaded["engine"].connect() as conn:
        flagged = sum(is_about_children(t) for t in conn.execute(text("SELECT text FROM descriptions")).scalars())
    assert flagged > 0 and sum(r.withheld for r in descriptions) == flagged
    for rows in (pairs, descriptions):
        assert any(r[1] for r in rows)
        for r in rows:
            assert (r[0] == NOTICE) == r[1]
            assert not is_about_children(r[0])
    assert all(r.no_vector for r in descriptions if r.withheld)
    assert not any(r.no_vector for r in descriptions if not r.withheld)


def test_analyst_role_holds_no_privilege_beyond_reading(loaded):
    """Not a superuser nor a member of any role that reads files, settings or other sessions, and no
    readable column looks like a secret (the API token is in the environment, never in the database)."""
    with loaded["engine"].connect() as conn:
        role = conn.execute(text(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles "
            "WHERE rolname = 'analyst'")).one()
        member_of = conn.execute(text(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles a ON a.oid = m.member WHERE a.rolname = 'analyst'")).scalars().all()
        readable = conn.execute(text(
            """SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p')
                 AND has_column_privilege('analyst', c.oid, a.attnum, 'SELECT')""")).all()
        writable = conn.execute(text(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p')
                 AND (has_table_privilege('analyst', c.oid, 'INSERT') OR has_table_privilege('analyst', c.oid, 'UPDATE')
                      OR has_table_privilege('analyst', c.oid, 'DELETE')
                      OR has_table_privilege('analyst', c.oid, 'TRUNCATE'))""")).scalars().all()
    assert not any(role)
    assert member_of == []
    assert writable == []
    assert {t for t, _ in readable} >= {"analyst_rated_pairs", "analyst_descriptions", "analyst_searches", "photos"}
    assert [f"{t}.{c}" for t, c in readable if SECRET_COLUMN.search(c)] == []
    assert ("descriptions", "text") not in readable and ("descriptions", "about_children") in readable
