"""The schema as typed SQLAlchemy models. Migrations in ``migrations/`` create it; ``alembic check``
(run by the tests) proves the two agree.

Vectors are stored without a fixed dimension (``vector``) and keyed by the model that made them, so
encoders of different sizes can live side by side and a search can never compare vectors of two
different models.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REAL
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ml.language import ENGLISH, UNDETERMINED

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SPLITS = ("train", "test", "upload")
DESCRIPTION_SOURCES = ("dataset", "owner", "user", "test")
MODEL_KINDS = ("encoder", "ranker")
CHILD_MARK_SOURCES = ("description", "uploader")
ROLES = ("photographer", "rater", "admin")  # what each may do: service/accounts/roles.py


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class User(Base):
    """A person who writes (migration 0011). ``bootstrap`` (admin) stands for WITHSENSE_API_TOKEN."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        CheckConstraint("name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'", name="name_format"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    role: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    """A user's API key as its public id and argon2id hash, never the key itself (service/accounts/keys.py)."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("key_id ~ '^[0-9a-f]{12}$'", name="key_id_hex"),
        CheckConstraint("key_hash LIKE '$argon2id$%'", name="argon2id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[str] = mapped_column(Text, unique=True)
    key_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A signed-in web page (migration 0012): the cookie's token is stored only as its SHA-256
    (service/accounts/sessions.py); ``key_id`` is the key it was made from (NULL: the bootstrap token)."""

    __tablename__ = "sessions"
    __table_args__ = (CheckConstraint("id ~ '^[0-9a-f]{64}$'", name="id_sha256"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Photo(Base):
    __tablename__ = "photos"
    __table_args__ = (
        CheckConstraint(_in("split", SPLITS), name="split"),
        CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        CheckConstraint("bytes > 0 AND width > 0 AND height > 0", name="positive_size"),
        CheckConstraint(f"shows_child_source IS NULL OR {_in('shows_child_source', CHILD_MARK_SOURCES)}",
                        name="shows_child_source"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    file_name: Mapped[str] = mapped_column(Text, index=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(Text)
    split: Mapped[str] = mapped_column(Text)
    uploader: Mapped[str | None] = mapped_column(Text)
    place: Mapped[str | None] = mapped_column(Text)
    camera: Mapped[str | None] = mapped_column(Text)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The content rule's mark (migration 0009): the photo shows a child, by one of its descriptions
    # or by its uploader's word. It still ranks; its image and flagged texts are withheld.
    shows_child: Mapped[bool] = mapped_column(Boolean, server_default=false())
    shows_child_source: Mapped[str | None] = mapped_column(Text)
    # Migration 0011: who uploaded it (NULL for dataset photos), and its tombstone once deleted: the
    # row stays for its descriptions and ratings, its files, vectors and queue job are gone.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


# Descriptions MiniLM does not read: ml.language's answer for the text is not English (or not
# known). One predicate for the partial index and the statements that must match it; only
# ``descriptions`` has a ``language`` column, so it reads unqualified in their joins.
OTHER_LANGUAGE = f"(language IS NULL OR language NOT IN ('{ENGLISH}', '{UNDETERMINED}'))"


class Description(Base):
    __tablename__ = "descriptions"
    __table_args__ = (
        CheckConstraint(_in("source", DESCRIPTION_SOURCES), name="source"),
        CheckConstraint("length(btrim(text)) BETWEEN 1 AND 2000", name="text_length"),
        # The descriptions an English query matches in USE's space too (migration 0016).
        Index("ix_descriptions_other_language", "photo_id", postgresql_where=text(OTHER_LANGUAGE)),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Text)
    # The photo the text was written for; NULL for dataset captions whose photo is not stored.
    photo_id: Mapped[int | None] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    # Flickr8k caption id such as "1056338697_4f7d7ce270.jpg#2"; makes dataset loads idempotent.
    dataset_key: Mapped[str | None] = mapped_column(Text, unique=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # from the key (migration 0011)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The content rule on the text (service.policy.is_about_children), set by its writer (migration
    # 0010); NULL = not checked. Analyst views show the text only when it is false.
    about_children: Mapped[bool | None] = mapped_column(Boolean)
    # ml.language's answer for the text, set by its writer (migration 0016); NULL = not known,
    # searched as another language.
    language: Mapped[str | None] = mapped_column(Text)


class ExpertRating(Base):
    __tablename__ = "expert_ratings"
    __table_args__ = (
        CheckConstraint("expert_no BETWEEN 1 AND 3", name="expert_no"),
        CheckConstraint("score BETWEEN 1 AND 4", name="score"),
    )

    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True)
    description_id: Mapped[int] = mapped_column(
        ForeignKey("descriptions.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    expert_no: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    score: Mapped[int] = mapped_column(SmallInteger)


class CrowdRating(Base):
    __tablename__ = "crowd_ratings"
    __table_args__ = (
        CheckConstraint("share BETWEEN 0 AND 1", name="share"),
        CheckConstraint("yes >= 0 AND no >= 0", name="counts"),
    )

    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True)
    description_id: Mapped[int] = mapped_column(
        ForeignKey("descriptions.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    share: Mapped[float] = mapped_column(Float)
    yes: Mapped[int] = mapped_column(Integer)
    no: Mapped[int] = mapped_column(Integer)


class CrowdVote(Base):
    """A live match / no-match vote from the API, about a stored description or a free query."""

    __tablename__ = "crowd_votes"
    __table_args__ = (
        CheckConstraint("description_id IS NOT NULL OR query IS NOT NULL", name="about_something"),
        # One vote per person per pair (migration 0011): a later vote replaces the earlier one.
        Index("uq_crowd_votes_voter_description", "voter_id", "photo_id", "description_id", unique=True,
              postgresql_where=text("voter_id IS NOT NULL AND description_id IS NOT NULL")),
        Index("uq_crowd_votes_voter_query", "voter_id", "photo_id", "query", unique=True,
              postgresql_where=text("voter_id IS NOT NULL AND description_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    description_id: Mapped[int | None] = mapped_column(ForeignKey("descriptions.id", ondelete="CASCADE"))
    query: Mapped[str | None] = mapped_column(Text)
    match: Mapped[bool] = mapped_column(Boolean)
    client: Mapped[str | None] = mapped_column(Text)  # a display name the client chose; not an identity
    voter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # from the key; NULL before 0011
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The content rule on ``query`` (migration 0010); NULL for votes about a stored description.
    about_children: Mapped[bool | None] = mapped_column(Boolean)


class Model(Base):
    """An encoder or a trained ranker (joint mapping + scorer), with its version and metrics.

    ``encoder_key`` names the encoder pair whose vectors a ranker consumes; at most one ranker per
    encoder pair is active.
    """

    __tablename__ = "models"
    __table_args__ = (
        CheckConstraint(_in("kind", MODEL_KINDS), name="kind"),
        CheckConstraint("dims > 0", name="dims"),
        Index("uq_models_kind_name_version", "kind", "name", "version", unique=True),
        Index(
            "uq_models_one_active_ranker",
            "encoder_key",
            unique=True,
            postgresql_where=text("active AND kind = 'ranker'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(Text)
    encoder_key: Mapped[str] = mapped_column(Text)
    dims: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # Package -> version that made this model's vectors (ml/versions.py; migration 0005).
    package_versions: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    artifact_path: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RankerTextTransform(Base):
    """A ranker's text transform as data (migration 0010): component ``component`` of a query in the
    ranker's space is ``text_vector . weights - bias``, then the whole vector is unit-normalised
    (SQL: ``ranker_query_vector(ranker_id, text_vector)``). Written when the ranker is published."""

    __tablename__ = "ranker_text_transform"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    component: Mapped[int] = mapped_column(Integer, primary_key=True)
    weights: Mapped[Any] = mapped_column(Vector())
    bias: Mapped[float] = mapped_column(Float)


class RankerPairScore(Base):
    """A ranker's calibrated score of an expert-rated (photo, description) pair, written when the
    ranker is published (migration 0010; service/training/pair_scores.py), for analysts."""

    __tablename__ = "ranker_pair_scores"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True)
    description_id: Mapped[int] = mapped_column(ForeignKey("descriptions.id", ondelete="CASCADE"), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    in_shortlist: Mapped[bool] = mapped_column(Boolean)  # false: a search would not have shown the photo


def _facets_column() -> Mapped[list[str]]:
    """The photo's place, camera and uploader beside each of its vectors (migration 0018), as the SQL
    function ``photo_facets`` makes them and triggers keep them, so a filtered search tests them in the
    row its index scan reads (service/search/shortlist.py) instead of probing ``photos``."""
    return mapped_column(ARRAY(Text), server_default=text("'{}'"))


class PhotoEmbedding(Base):
    """A photo's vector under one model: raw image features (encoder) or joint-space vector (ranker)."""

    __tablename__ = "photo_embeddings"
    __table_args__ = (Index(None, "facets", postgresql_using="gin"),)

    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    embedding: Mapped[Any] = mapped_column(Vector())
    # Ranker rows only: the photo's zero-shot text-space vector that the scorer reads (migration 0004).
    bridge: Mapped[Any | None] = mapped_column(Vector())
    # Ranker rows only: the reranker's label evidence and the mapper's output length (migration 0008).
    label_ids: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    label_probs: Mapped[list[float] | None] = mapped_column(ARRAY(REAL))
    mapper_norm: Mapped[float | None] = mapped_column(REAL)
    facets: Mapped[list[str]] = _facets_column()


JOB_STATES = ("queued", "failed")


class EmbeddingJob(Base):
    """A stored photo waiting for its image vectors (migration 0006; ``service.photos.embedding_queue``)."""

    __tablename__ = "embedding_jobs"
    __table_args__ = (
        CheckConstraint(_in("state", JOB_STATES), name="state"),
        Index("ix_embedding_jobs_queued", "enqueued_at", postgresql_where=text("state = 'queued'")),
    )

    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(Text, server_default=text("'queued'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DescriptionEmbedding(Base):
    __tablename__ = "description_embeddings"
    __table_args__ = (Index(None, "facets", postgresql_using="gin"),)

    description_id: Mapped[int] = mapped_column(
        ForeignKey("descriptions.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    embedding: Mapped[Any] = mapped_column(Vector())
    facets: Mapped[list[str]] = _facets_column()


class SearchLog(Base):
    __tablename__ = "search_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    query: Mapped[str] = mapped_column(Text)
    blocked: Mapped[bool] = mapped_column(Boolean)
    n_results: Mapped[int] = mapped_column(Integer)
    photo_ids: Mapped[list[int]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    took_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Migration 0010: the search's min_score, and the text encoder's vector of the query (NULL when
    # blocked or about children), so analysts can re-run it in SQL under any ranker
    # (ranker_query_vector); about_children is the content rule on ``query``.
    min_score: Mapped[float | None] = mapped_column(Float)
    text_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    text_vector: Mapped[Any | None] = mapped_column(Vector())
    about_children: Mapped[bool | None] = mapped_column(Boolean)


class RateCounter(Base):
    """Hits per (bucket, client, 60 s window), shared by every worker and server (migration 0013,
    UNLOGGED; service/http/ratelimit.py)."""

    __tablename__ = "rate_counters"

    bucket: Mapped[str] = mapped_column(Text, primary_key=True)
    client: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True, index=True)
    n: Mapped[int] = mapped_column(Integer, server_default=text("1"))


AUDIT_ACTIONS = ("upload", "describe", "vote", "edit", "delete", "key_issued", "key_revoked", "user_added", "sign_in")


class AuditRecord(Base):
    """One write: who, when, what, the photo or user it touched (migration 0013; append-only by a
    trigger; service/audit.py)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(_in("action", AUDIT_ACTIONS), name="action"),
        Index("ix_audit_log_actor_id", "actor_id", "id"),
        Index("ix_audit_log_photo_id", "photo_id", "id"),
        Index("ix_audit_log_action", "action", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(Text)
    photo_id: Mapped[int | None] = mapped_column(BigInteger)
    target_user_id: Mapped[int | None] = mapped_column(BigInteger)
    details: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
