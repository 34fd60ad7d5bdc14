"""The migration chain: up, down to nothing, up again, and no drift from service.store.tables."""
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from service.cli import alembic_config
from tests.helpers import migrate_to

EXPECTED_TABLES = {
    "photos", "descriptions", "expert_ratings", "crowd_ratings", "crowd_votes", "models",
    "photo_embeddings", "description_embeddings", "search_log", "embedding_jobs", "ranker_text_transform",
    "ranker_pair_scores", "users", "api_keys", "sessions", "rate_counters", "audit_log",
}


def _tables(url):
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(make_database):
    url = make_database(migrate=False)
    migrate_to(url, "head")
    assert _tables(url) == EXPECTED_TABLES
    migrate_to(url, "base", down=True)
    assert _tables(url) == set()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")).scalar() == 0
    engine.dispose()
    migrate_to(url, "head")
    assert _tables(url) == EXPECTED_TABLES


def test_database_is_at_head_and_models_match(make_database):
    url = make_database()
    config = alembic_config(url)
    heads = ScriptDirectory.from_config(config).get_heads()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert [conn.execute(text("SELECT version_num FROM alembic_version")).scalar()] == heads
        assert conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
    engine.dispose()
    command.check(config)  # raises when service.store.tables and the migrations disagree
