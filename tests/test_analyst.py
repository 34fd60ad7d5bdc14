"""The analyst role reads the documented views and cannot write."""
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError


@pytest.fixture(scope="module")
def analyst(loaded):
    with loaded["engine"].begin() as conn:  # one logged search, so the search_log example has a row
        conn.execute(text("INSERT INTO search_log (query, blocked, n_results, took_ms) VALUES ('a dog', false, 5, 12.5)"))
    url = make_url(loaded["settings"].database_url).set(username="analyst", password=None)
    engine = create_engine(url)
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


def _doc_examples():
    from service.config import REPO_ROOT

    doc = (REPO_ROOT / "docs" / "analysts.md").read_text()
    return [block.split("```", 1)[0] for block in doc.split("```sql")[1:]]


def test_docs_have_seven_examples():
    assert len(_doc_examples()) == 7


@pytest.mark.parametrize("index", range(7))
def test_documented_examples_run_as_analyst(analyst, index):
    """Every SQL example in docs/analysts.md runs for the analyst role and returns rows."""
    with analyst.connect() as conn:
        rows = conn.execute(text(_doc_examples()[index])).all()
    assert rows
