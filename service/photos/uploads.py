"""Photos and their descriptions in the database: adding (upload and CLI share ``add_photo``), reading.

Functions take the session keyword-only and never commit: the caller (a view, a CLI loop) decides
when a unit of work is done. ``add_photo`` decodes and fingerprints before touching the database,
and the unique sha256 decides duplicates with INSERT ... ON CONFLICT, so two concurrent uploads of
the same bytes give one row and one ``duplicate_of``. The image features (the slow part: several
CNN passes) are not computed here: the photo is queued (``embedding_queue``) and becomes
searchable when a worker has written its vectors, so an upload answers in tens of milliseconds.

Owners edit and delete (``update_metadata``, ``delete_photo``; who may is
``service.accounts.roles``). A deleted photo stays as a tombstone row (``deleted_at``) that every
read here treats as absent; its vectors and queue job are deleted in the same transaction, so the
SQL shortlist and similar photos, which read vectors, lose it at once without a filter of their
own, and its files are removed once that transaction has committed (``remove_files``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ml.language import shared_detector
from service.config import Settings
from service.photos import child_marks, embedding_queue
from service.photos.fingerprint import FINGERPRINT
from service.photos.images import ImageRejected, decode_image
from service.policy import is_about_children
from service.store import photo_files
from service.store.model_rows import encoder_model_ids
from service.store.tables import Description, Photo

INSERT_PHOTO_SQL = text(
    """
    INSERT INTO photos (file_name, sha256, bytes, width, height, storage_key, split,
                        uploader, place, camera, taken_at, owner_id)
    VALUES (:file_name, :sha256, :bytes, :width, :height, :storage_key, 'upload',
            :uploader, :place, :camera, :taken_at, :owner_id)
    ON CONFLICT (sha256) DO NOTHING
    RETURNING id
    """
)

# The upload's fingerprint row; image features and the ranker's rows come from the embedding queue.
INSERT_PHOTO_VECTOR_SQL = text(
    "INSERT INTO photo_embeddings (photo_id, model_id, embedding) VALUES (:photo_id, :model_id, :embedding)"
)

INSERT_DESCRIPTION_SQL = text(
    """INSERT INTO descriptions (text, source, author, photo_id, about_children, author_id, language)
       VALUES (:text, :source, :author, :photo_id, :about_children, :author_id, :language) RETURNING id"""
)

INSERT_DESCRIPTION_VECTOR_SQL = text(
    """INSERT INTO description_embeddings (description_id, model_id, embedding)
       VALUES (:description_id, :model_id, :embedding)"""
)

# Photos whose fingerprint is within a small cosine distance of the new one's: re-encoded or
# resized copies (see service/photos/fingerprint.py for why the fingerprint and not the CNN features).
NEAR_DUPLICATES_SQL = text(
    """
    WITH fingerprint_neighbours AS (
        SELECT e.photo_id, e.embedding <=> :fingerprint AS distance
        FROM photo_embeddings e
        WHERE e.model_id = :fingerprint_model_id AND e.photo_id <> :photo_id
        ORDER BY e.embedding <=> :fingerprint
        LIMIT 10
    )
    SELECT n.photo_id, p.file_name, n.distance
    FROM fingerprint_neighbours n JOIN photos p ON p.id = n.photo_id
    WHERE n.distance <= :max_distance
    ORDER BY n.distance, n.photo_id
    """
)

# The ratings of one photo, over descriptions that are not held-out test queries.
RATINGS_SUMMARY_SQL = text(
    """
    WITH experts AS (
        SELECT count(DISTINCT er.description_id) AS pairs, avg(er.score)::float8 AS mean
        FROM expert_ratings er JOIN descriptions d ON d.id = er.description_id
        WHERE er.photo_id = :photo_id AND d.source <> 'test'
    ), crowd AS (
        SELECT count(*) AS pairs, avg(cr.share)::float8 AS mean_share,
               coalesce(sum(cr.yes), 0) AS yes, coalesce(sum(cr.no), 0) AS no
        FROM crowd_ratings cr JOIN descriptions d ON d.id = cr.description_id
        WHERE cr.photo_id = :photo_id AND d.source <> 'test'
    ), live AS (
        SELECT count(*) FILTER (WHERE v.match) AS yes, count(*) FILTER (WHERE NOT v.match) AS no
        FROM crowd_votes v LEFT JOIN descriptions d ON d.id = v.description_id
        WHERE v.photo_id = :photo_id AND (d.id IS NULL OR d.source <> 'test')
    )
    SELECT experts.pairs AS expert_pairs, experts.mean AS expert_mean,
           crowd.pairs AS crowd_pairs, crowd.mean_share AS crowd_mean_share,
           crowd.yes AS crowd_yes, crowd.no AS crowd_no,
           live.yes AS live_yes, live.no AS live_no
    FROM experts, crowd, live
    """
)

MAX_DESCRIPTION_CHARS = 2000  # the descriptions table's check constraint

OWNER_NAME_SQL = text("SELECT name FROM users WHERE id = :user_id")

# Deleting, in this order inside one transaction. The tombstone first (a NO KEY UPDATE lock, which
# lets an embedding worker's inserts of this photo's vectors through: they only need KEY SHARE);
# then the job, which waits for a worker that holds it to commit; then the vectors, in a statement
# whose snapshot sees what that worker wrote. So no vector of a deleted photo outlives the commit.
TOMBSTONE_SQL = text(
    """UPDATE photos SET deleted_at = now(), deleted_by = :user_id
       WHERE id = :photo_id AND deleted_at IS NULL RETURNING storage_key, sha256"""
)
DELETE_JOB_SQL = text("DELETE FROM embedding_jobs WHERE photo_id = :photo_id")
DELETE_VECTORS_SQL = text("DELETE FROM photo_embeddings WHERE photo_id = :photo_id")
# Its descriptions' vectors too: a description search then needs no probe of `photos` for the
# tombstone (service/search/shortlist.py). The texts stay for analysts.
DELETE_DESCRIPTION_VECTORS_SQL = text(
    """DELETE FROM description_embeddings
       WHERE description_id IN (SELECT id FROM descriptions WHERE photo_id = :photo_id)"""
)
# A description's writer holds this (FOR SHARE) on its photo until it commits; the tombstone's UPDATE
# waits for it, so the deletion's statements see the new description's vectors and delete them.
LIVE_PHOTO_SHARE_SQL = text("SELECT 1 FROM photos WHERE id = :photo_id AND deleted_at IS NULL FOR SHARE")
LIVE_KEY_SQL = text("SELECT 1 FROM photos WHERE storage_key = :key AND deleted_at IS NULL LIMIT 1")

EDITABLE = ("place", "camera", "taken_at", "shows_child")


@dataclass(frozen=True)
class NearDuplicate:
    """A stored photo whose fingerprint is within ``near_duplicate_distance`` of a new one's."""

    photo_id: int
    file_name: str
    distance: float


@dataclass
class AddedPhoto:
    photo_id: int
    duplicate_of: int | None = None
    near_duplicates: list[NearDuplicate] = field(default_factory=list)
    queued: bool = False  # its image vectors are still to be computed (``embedding_queue``)


@dataclass(frozen=True)
class ShownDescription:
    """A description as shown to users: the notice in place of a text the content rule flags."""

    description_id: int
    text: str
    source: str
    author: str | None
    created_at: datetime | None


@dataclass(frozen=True)
class RatingsSummary:
    """A photo's ratings over descriptions that are not held-out test queries."""

    expert_pairs: int
    expert_mean_score: float | None
    crowd_pairs: int
    crowd_mean_share: float | None
    crowd_yes: int
    crowd_no: int
    live_yes: int
    live_no: int


@dataclass(frozen=True)
class PhotoDetails:
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
    taken_at: datetime | None
    created_at: datetime | None
    shows_child: bool  # the content rule's mark: a description or the uploader says so
    owner: str | None  # the account that uploaded it; None for dataset photos
    descriptions: list[ShownDescription]
    ratings: RatingsSummary


class PhotoNotFound(LookupError):
    def __init__(self, photo_id: int, field: str | None = None):
        super().__init__(f"photo {photo_id} does not exist")
        self.field = field


class DeletedBefore(ValueError):
    """The bytes of a photo that was deleted: its tombstone keeps the sha256 (a 409)."""

    def __init__(self, photo_id: int):
        super().__init__(f"this file is photo {photo_id}, which was deleted; a deleted photo cannot be uploaded again")
        self.photo_id = photo_id


class KeptMark(ValueError):
    """``shows_child`` false for a photo that one of its descriptions marks (a 409)."""


def require(*, session: Session, photo_id: int, field: str | None = None, for_update: bool = False) -> Photo:
    """The photo, or ``PhotoNotFound`` (a 404 at the HTTP edge, ``service.http.errors``); a deleted
    photo is not found. ``for_update`` locks its row until the transaction ends."""
    photo = session.get(Photo, photo_id, with_for_update={"key_share": True} if for_update else None,
                        populate_existing=for_update)
    if photo is None or photo.deleted_at is not None:
        raise PhotoNotFound(photo_id, field)
    return photo


def id_for_sha256(*, session: Session, sha256: str) -> int | None:
    """The photo with these bytes; ``DeletedBefore`` when that photo was deleted."""
    row = session.execute(select(Photo.id, Photo.deleted_at).where(Photo.sha256 == sha256)).first()
    if row is not None and row.deleted_at is not None:
        raise DeletedBefore(row.id)
    return None if row is None else row.id


def known_sha256(*, session: Session) -> set[str]:
    """Every stored photo's sha256: lets a folder ingest skip what it already has without decoding."""
    return set(session.scalars(select(Photo.sha256)))


def check_size(data: bytes, settings: Settings) -> None:
    limit = settings.max_upload_mb * 1024 * 1024
    if len(data) > limit:
        raise ImageRejected(f"the file is {len(data) / 1048576:.1f} MB; the limit is {settings.max_upload_mb} MB")


def add_photo(
    data: bytes, *, session: Session, settings: Settings, encoders, file_name: str | None = None,
    description: str | None = None, place: str | None = None, camera: str | None = None,
    taken_at: datetime | None = None, uploader: str | None = None, shows_child: bool = False,
    owner_id: int | None = None,
) -> AddedPhoto:
    """Store one photo, its fingerprint and its owner's description (with its text vector), and
    queue it for its image vectors: it is searchable once a worker has processed the job.

    ``shows_child``: the uploader says the photo shows a child (the content rule's mark, as a
    description about a child also sets it). ``owner_id``: the user the key belongs to (None from
    the command line); ``uploader`` is only a display name.

    Raises ImageRejected (with a message for the user) for bytes that are not an acceptable image.
    The same bytes again give ``AddedPhoto(existing_id, duplicate_of=existing_id)`` and change nothing.
    """
    check_size(data, settings)
    sha = photo_files.sha256_hex(data)
    existing = id_for_sha256(session=session, sha256=sha)
    if existing is not None:
        return AddedPhoto(existing, duplicate_of=existing)
    decoded = decode_image(data, max_pixels=settings.max_pixels)

    fingerprint_model_id = encoder_model_ids(session.get_bind(), settings, image_encoder=FINGERPRINT)["image"]
    fingerprint = FINGERPRINT.encode([decoded.image])[0]

    key = photo_files.storage_key(sha, decoded.extension)
    photo_files.put(settings.photo_store_dir, key, data)  # before the row: a row never points at nothing
    photo_id = session.execute(INSERT_PHOTO_SQL, {
        "file_name": file_name or f"{sha[:16]}{decoded.extension}", "sha256": sha, "bytes": len(data),
        "width": decoded.width, "height": decoded.height, "storage_key": key,
        "uploader": uploader, "place": place, "camera": camera, "taken_at": taken_at, "owner_id": owner_id,
    }).scalar()
    if photo_id is None:  # a concurrent request stored the same bytes first
        existing = id_for_sha256(session=session, sha256=sha)
        return AddedPhoto(existing, duplicate_of=existing)
    session.execute(INSERT_PHOTO_VECTOR_SQL, {
        "photo_id": photo_id, "model_id": fingerprint_model_id, "embedding": np.asarray(fingerprint, dtype=np.float32)})
    embedding_queue.enqueue(session=session, photo_id=photo_id)
    if shows_child:
        child_marks.mark(session, [photo_id], source="uploader")
    if description:
        add_description(session=session, settings=settings, text_encoder=encoders.text, photo_id=photo_id,
                        text_=description, source="owner", author=uploader, author_id=owner_id,
                        multilingual=encoders.multilingual)
    near = near_duplicates(session=session, photo_id=photo_id, fingerprint=fingerprint,
                           fingerprint_model_id=fingerprint_model_id, max_distance=settings.near_duplicate_distance)
    return AddedPhoto(photo_id, near_duplicates=near, queued=True)


def near_duplicates(*, session: Session, photo_id: int, fingerprint: np.ndarray, fingerprint_model_id: int,
                    max_distance: float) -> list[NearDuplicate]:
    rows = session.execute(NEAR_DUPLICATES_SQL, {
        "fingerprint": np.asarray(fingerprint, dtype=np.float32), "fingerprint_model_id": fingerprint_model_id,
        "photo_id": photo_id, "max_distance": max_distance,
    }).all()
    return [NearDuplicate(r.photo_id, r.file_name, round(float(r.distance), 6)) for r in rows]


def add_description(*, session: Session, settings: Settings, text_encoder, photo_id: int, text_: str,
                    source: str, author: str | None, author_id: int | None = None, multilingual=None) -> int:
    """Store a description of a photo with its text vector (and ``multilingual``'s, USE's, so a query
    in another language finds it), so search can use it immediately.

    A description about a child marks its photo (``child_marks``): the photo still ranks, but
    responses withhold its image and show the notice in place of the flagged text.
    """
    if session.execute(LIVE_PHOTO_SHARE_SQL, {"photo_id": photo_id}).first() is None:
        raise PhotoNotFound(photo_id)  # deleted since the caller looked
    description_id = session.execute(INSERT_DESCRIPTION_SQL, {
        "text": text_, "source": source, "author": author, "photo_id": photo_id,
        "about_children": is_about_children(text_), "author_id": author_id,
        "language": shared_detector().detect(text_)}).scalar_one()
    for encoder in (text_encoder, multilingual) if multilingual is not None else (text_encoder,):
        model_id = encoder_model_ids(session.get_bind(), settings, text_encoder=encoder)["text"]
        session.execute(INSERT_DESCRIPTION_VECTOR_SQL, {
            "description_id": description_id, "model_id": model_id,
            "embedding": np.asarray(encoder.encode([text_])[0], dtype=np.float32)})
    child_marks.mark_described(session, [(photo_id, text_)])
    return description_id


def get_description(*, session: Session, description_id: int) -> Description | None:
    """A description by id; held-out test queries count as not existing."""
    found = session.get(Description, description_id)
    return None if found is None or found.source == "test" else found


def details(*, session: Session, photo: Photo, rule_on: bool = True) -> PhotoDetails:
    """Metadata, descriptions (never the held-out test queries; the notice in place of a text the
    content rule flags, when ``rule_on``) and a ratings summary."""
    descriptions = session.scalars(
        select(Description).where(Description.photo_id == photo.id, Description.source != "test").order_by(Description.id)
    ).all()
    ratings = session.execute(RATINGS_SUMMARY_SQL, {"photo_id": photo.id}).mappings().one()
    owner = session.scalar(OWNER_NAME_SQL, {"user_id": photo.owner_id}) if photo.owner_id is not None else None
    return PhotoDetails(
        photo_id=photo.id, file_name=photo.file_name, split=photo.split, sha256=photo.sha256,
        bytes=photo.bytes, width=photo.width, height=photo.height,
        uploader=photo.uploader, place=photo.place, camera=photo.camera,
        taken_at=photo.taken_at, created_at=photo.created_at, shows_child=photo.shows_child, owner=owner,
        descriptions=[
            ShownDescription(d.id, child_marks.shown_text(d.text, rule_on=rule_on), d.source, d.author, d.created_at)
            for d in descriptions
        ],
        ratings=RatingsSummary(
            expert_pairs=ratings["expert_pairs"], expert_mean_score=_round(ratings["expert_mean"]),
            crowd_pairs=ratings["crowd_pairs"], crowd_mean_share=_round(ratings["crowd_mean_share"]),
            crowd_yes=int(ratings["crowd_yes"]), crowd_no=int(ratings["crowd_no"]),
            live_yes=ratings["live_yes"], live_no=ratings["live_no"],
        ),
    )


def update_metadata(*, session: Session, photo: Photo, changes: dict) -> None:
    """Set the given fields of ``EDITABLE`` (None clears place, camera or taken_at).

    ``shows_child`` true marks the photo (source ``uploader``); false takes back an uploader's mark,
    but a mark that a description about a child set stays (``KeptMark``): the content rule's text
    still says so.
    """
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    for name in ("place", "camera", "taken_at"):
        if name in changes:
            setattr(photo, name, changes[name])
    if changes.get("shows_child") is True:
        child_marks.mark(session, [photo.id], source="uploader")
    elif changes.get("shows_child") is False and photo.shows_child:
        if photo.shows_child_source == "description":
            raise KeptMark(f"photo {photo.id} is marked because one of its descriptions is about a child; "
                           "the mark stays while that description does")
        photo.shows_child, photo.shows_child_source = False, None
    session.flush()
    session.refresh(photo)


def delete_photo(*, session: Session, photo_id: int, user_id: int) -> tuple[str, str] | None:
    """Tombstone the photo and delete its vectors, its descriptions' vectors and its queue job (see
    the SQL's comment for the order); returns its (storage key, sha256), for ``remove_files`` after
    the commit, or None when it was deleted already. Descriptions and ratings stay, for analysts
    (``photos.deleted_at`` marks them); without vectors, neither search nor training reads them."""
    row = session.execute(TOMBSTONE_SQL, {"photo_id": photo_id, "user_id": user_id}).first()
    if row is None:
        return None
    session.execute(DELETE_JOB_SQL, {"photo_id": photo_id})
    session.execute(DELETE_VECTORS_SQL, {"photo_id": photo_id})
    session.execute(DELETE_DESCRIPTION_VECTORS_SQL, {"photo_id": photo_id})
    return row.storage_key, row.sha256


def remove_files(*, session: Session, settings: Settings, storage_key: str, sha256: str) -> None:
    """A deleted photo's file and thumbnail, once its deletion has committed. The store is
    content-addressed, so the file stays if a live photo points at the same key (none can while
    sha256 is unique, but a check costs one indexed query)."""
    if session.execute(LIVE_KEY_SQL, {"key": storage_key}).first() is not None:
        return
    for key in (storage_key, photo_files.thumbnail_key(sha256)):
        photo_files.path_for(settings.photo_store_dir, key).unlink(missing_ok=True)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
