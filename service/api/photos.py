"""Photos: upload, metadata, edits and deletion by their owners, descriptions, and the image files
(served only by id). Who may write what: service/accounts/roles.py."""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from flask import Blueprint, current_app, request, send_file, url_for
from werkzeug.utils import secure_filename

from service.accounts import audit
from service.accounts.roles import check_photo
from service.http import schemas
from service.http.auth import authenticate
from service.http.contract import (
    BODY_ERRORS,
    DATABASE_ERRORS,
    ID_OUT_OF_RANGE,
    PHOTO_ID,
    RATE_LIMITED,
    endpoint,
    reply,
    responses,
)
from service.http.db_session import get_session, note_write, run_read
from service.http.pictures import picture
from service.photos import child_marks, embedding_queue, uploads
from service.photos.images import ACCEPTED_FORMATS, EXTENSIONS, thumbnail_jpeg
from service.runtime import descriptions_written, get_encoders
from service.store import photo_files

bp = Blueprint("photos", __name__)

MIMETYPES = {ext: ACCEPTED_FORMATS[fmt] for fmt, ext in EXTENSIONS.items()}


def _settings():
    return current_app.config["WITHSENSE"]


@bp.post("/api/photos")
@endpoint(form=schemas.PhotoUpload, write="upload",
          resp=responses({201: schemas.PhotoAdded, 200: schemas.PhotoAdded},
                         (401, 403, 409, 422, *RATE_LIMITED, *BODY_ERRORS, *DATABASE_ERRORS)))
def upload():
    """Upload a photo (multipart); it is searchable once stored. Its owner is the key's person."""
    form: schemas.PhotoUpload = request.context.form
    session = get_session()
    added = uploads.add_photo(form.file.read(), session=session, settings=_settings(), encoders=get_encoders(),
                              file_name=secure_filename(form.file.filename or "") or None,
                              owner_id=authenticate().user_id, **form.model_dump(exclude={"file"}))
    audit.record(session, actor_id=authenticate().user_id, action="upload", photo_id=added.photo_id,
                 details={"duplicate_of": added.duplicate_of, "queued": added.queued})
    session.commit()  # the queued job's NOTIFY wakes `withsense worker` (service/photos/embedding_queue.py)
    note_write()
    if form.description:
        descriptions_written()
    stored = uploads.require(session=session, photo_id=added.photo_id)
    state = embedding_queue.search_state(session=session, photo_id=added.photo_id, encoder_key=_settings().encoder_key)
    body = schemas.PhotoAdded(
        photo_id=added.photo_id, duplicate_of=added.duplicate_of,
        near_duplicates=[schemas.NearDuplicate(**asdict(near)) for near in added.near_duplicates],
        **picture(added.photo_id, stored.shows_child), search=_search_state(state))
    status = 200 if added.duplicate_of is not None else 201
    return reply(body, status, {"Location": url_for("photos.photo", photo_id=added.photo_id)})


@bp.get(f"/api/photos/{PHOTO_ID}")
@endpoint(resp=responses({200: schemas.PhotoDetails}, (404, *DATABASE_ERRORS)))
def photo(photo_id: int):
    """A photo's metadata, descriptions and ratings summary, and whether search finds it yet."""
    rule_on, encoder_key = _settings().content_rule, _settings().encoder_key

    def read(session):
        photo = uploads.require(session=session, photo_id=photo_id)
        details = uploads.details(session=session, photo=photo, rule_on=rule_on)
        return details, embedding_queue.search_state(session=session, photo_id=photo_id, encoder_key=encoder_key)

    # From a replica; not found there may only mean not replicated yet, so the primary is asked then.
    details, state = run_read(read, retry_on_primary=(uploads.PhotoNotFound,))
    return reply(_photo_details(details, state))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _search_state(state: embedding_queue.SearchState) -> schemas.SearchState:
    """Only the keys that apply: ``attempts`` while there is a job, ``error`` for a failed one."""
    return schemas.SearchState(**{key: value for key, value in asdict(state).items() if value is not None})


def _photo_details(details: uploads.PhotoDetails, state: embedding_queue.SearchState) -> schemas.PhotoDetails:
    ratings = details.ratings
    return schemas.PhotoDetails(
        photo_id=details.photo_id, file_name=details.file_name, split=details.split, sha256=details.sha256,
        bytes=details.bytes, width=details.width, height=details.height, uploader=details.uploader,
        place=details.place, camera=details.camera, taken_at=_iso(details.taken_at),
        created_at=_iso(details.created_at), shows_child=details.shows_child, owner=details.owner,
        descriptions=[schemas.DescriptionOut(description_id=d.description_id, text=d.text, source=d.source,
                                             author=d.author, created_at=_iso(d.created_at))
                      for d in details.descriptions],
        ratings=schemas.RatingsSummary(
            expert=schemas.ExpertSummary(pairs=ratings.expert_pairs, mean_score=ratings.expert_mean_score),
            crowd=schemas.CrowdSummary(pairs=ratings.crowd_pairs, mean_share=ratings.crowd_mean_share,
                                       yes=ratings.crowd_yes, no=ratings.crowd_no),
            live_votes=schemas.VoteSummary(yes=ratings.live_yes, no=ratings.live_no)),
        **{"notice": None, **picture(details.photo_id, details.shows_child, thumbnail=True)},
        search=_search_state(state),
    )


@bp.patch(f"/api/photos/{PHOTO_ID}")
@endpoint(json=schemas.PhotoEdit, write="edit",
          resp=responses({200: schemas.PhotoDetails}, (401, 403, 404, 409, *ID_OUT_OF_RANGE, *RATE_LIMITED,
                                                        *BODY_ERRORS, *DATABASE_ERRORS)))
def edit(photo_id: int):
    """Change a photo's place, camera, taken_at or shows_child: its owner or an admin."""
    body: schemas.PhotoEdit = request.context.json
    session = get_session()
    photo = uploads.require(session=session, photo_id=photo_id, for_update=True)
    check_photo(authenticate(), "edit", photo_id=photo_id, owner_id=photo.owner_id)
    uploads.update_metadata(session=session, photo=photo, changes=body.model_dump(include=body.model_fields_set))
    audit.record(session, actor_id=authenticate().user_id, action="edit", photo_id=photo_id,
                 details={"fields": sorted(body.model_fields_set)})
    session.commit()
    note_write()
    details = uploads.details(session=session, photo=photo, rule_on=_settings().content_rule)
    state = embedding_queue.search_state(session=session, photo_id=photo_id, encoder_key=_settings().encoder_key)
    return reply(_photo_details(details, state))


@bp.delete(f"/api/photos/{PHOTO_ID}")
@endpoint(write="delete",
          resp=responses({200: schemas.PhotoDeleted}, (401, 403, 404, *ID_OUT_OF_RANGE, *RATE_LIMITED,
                                                        *DATABASE_ERRORS)))
def delete(photo_id: int):
    """Delete a photo: its owner or an admin. Gone from search, similar photos and pages at once;
    its files, vectors and queue job go; its descriptions and ratings stay for analysts."""
    session = get_session()
    photo = uploads.require(session=session, photo_id=photo_id, for_update=True)
    check_photo(authenticate(), "delete", photo_id=photo_id, owner_id=photo.owner_id)
    files = uploads.delete_photo(session=session, photo_id=photo_id, user_id=authenticate().user_id)
    if files is not None:
        audit.record(session, actor_id=authenticate().user_id, action="delete", photo_id=photo_id)
    session.commit()
    note_write()
    if files is None:  # deleted by a concurrent request between the lookup and the tombstone
        raise uploads.PhotoNotFound(photo_id)
    uploads.remove_files(session=session, settings=_settings(), storage_key=files[0], sha256=files[1])
    session.refresh(photo)
    return reply(schemas.PhotoDeleted(photo_id=photo_id, deleted=True, deleted_at=_iso(photo.deleted_at)))


@bp.post(f"/api/photos/{PHOTO_ID}/descriptions")
@endpoint(json=schemas.DescriptionRequest, write="describe",
          resp=responses({201: schemas.DescriptionAdded}, (401, 403, 404, *RATE_LIMITED, *BODY_ERRORS,
                                                            *DATABASE_ERRORS)))
def add_description(photo_id: int):
    """Describe a photo (its owner, or an admin); the description is embedded at once and used by search."""
    body: schemas.DescriptionRequest = request.context.json
    text_, author = body.text, body.author
    session = get_session()
    principal = authenticate()
    photo = uploads.require(session=session, photo_id=photo_id)
    check_photo(principal, "describe", photo_id=photo_id, owner_id=photo.owner_id)
    description_id = uploads.add_description(session=session, settings=_settings(), text_encoder=get_encoders().text,
                                            photo_id=photo_id, text_=text_, source="user", author=author,
                                            author_id=principal.user_id, multilingual=get_encoders().multilingual)
    audit.record(session, actor_id=principal.user_id, action="describe", photo_id=photo_id,
                 details={"description_id": description_id})
    session.commit()
    note_write()
    descriptions_written()
    shown = child_marks.shown_text(text_, rule_on=_settings().content_rule)
    return reply(schemas.DescriptionAdded(description_id=description_id, photo_id=photo_id, text=shown,
                                          author=author), 201)


def _servable(photo_id: int):
    """The photo, unless it does not exist (404) or the content rule withholds it (451)."""
    photo = uploads.require(session=get_session(), photo_id=photo_id)
    if child_marks.withheld(photo.shows_child, rule_on=_settings().content_rule):
        raise child_marks.PhotoWithheld(photo_id)
    return photo


@bp.get(f"/photos/{PHOTO_ID}/image")
@endpoint(resp=responses({200: None}, (404, 451, *DATABASE_ERRORS)))
def image(photo_id: int):
    """The photo file as stored (451 with the notice for a photo the content rule withholds)."""
    photo = _servable(photo_id)
    path = photo_files.path_for(_settings().photo_store_dir, photo.storage_key)
    mimetype = MIMETYPES.get(path.suffix, "application/octet-stream")
    return send_file(path, mimetype=mimetype, max_age=86400, etag=photo.sha256)


@bp.get(f"/photos/{PHOTO_ID}/thumbnail")
@endpoint(resp=responses({200: None}, (404, 451, *DATABASE_ERRORS)))
def thumbnail(photo_id: int):
    """At most 256 px JPEG, made on first request and kept in the store's thumbnails/ folder."""
    photo = _servable(photo_id)
    settings = _settings()
    path = photo_files.path_for(settings.photo_store_dir, photo_files.thumbnail_key(photo.sha256))
    if not path.exists():
        original = photo_files.path_for(settings.photo_store_dir, photo.storage_key).read_bytes()
        photo_files.put(settings.photo_store_dir, photo_files.thumbnail_key(photo.sha256),
                    thumbnail_jpeg(original, max_pixels=settings.max_pixels))
    return send_file(path, mimetype="image/jpeg", max_age=86400, etag=f"thumb-{photo.sha256}")
