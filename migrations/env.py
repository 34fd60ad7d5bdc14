"""Alembic environment: metadata from service.store.tables, URL from service.config.

A caller that already holds a connection (the tests) passes it in ``config.attributes["connection"]``.
"""
from alembic import context
from sqlalchemy import create_engine, pool

from service.config import load_settings
from service.store.db import resolve_url
from service.store.tables import Base

config = context.config
target_metadata = Base.metadata


def render_item(type_, obj, autogen_context):
    """Render pgvector types with a stable import in generated revisions."""
    if type_ == "type" and obj.__class__.__module__.startswith("pgvector"):
        autogen_context.imports.add("import pgvector.sqlalchemy")
        return f"pgvector.sqlalchemy.{obj!r}"
    return False


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Leave out the per-model HNSW indexes: `withsense train` creates one per published ranker and
    per text encoder (service/store/hnsw.py), so they are data-dependent and not part of the declared schema."""
    return not (type_ == "index" and reflected and name
                and name.startswith(("photo_embeddings_hnsw_m", "description_embeddings_hnsw_m")))


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=render_item,
        include_object=include_object,
        transaction_per_migration=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = config.attributes.get("url") or resolve_url(load_settings())
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        run_migrations(connection)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against a database")
run_migrations_online()
