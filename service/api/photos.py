"""Photos: upload, metadata, descriptions by other users, and the image files (served only by id)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, send_file, url_for
from werkzeug.utils import secure_filename

from service.http.auth import require_write_token
from service.http.errors import ApiError
from service.http.validation import datetime_field, json_body, text_field
from service.photos import uploads
from service.photos.images import (
    ACCEPTED_FORMATS,
    EXTENSIONS,
    thumbnail_jpeg,
)
from service.runtime import get_encoders
from service.store import photo_files
from service.store.db import get_session, note_write, run_read

bp = Blueprint("photos", __name__)

MIMETYPES = {ext: ACCEPTED_FORMATS[fmt] for fmt, ext in EXTENSIONS.items()}
MAX_META_CHARS = 200


def _settings():
    return current_app.config["WITHSENSE"]


@bp.post("/api/photos")
def upload():
    require_write_token()
    upload = request.files.get("file")
    if upload is None:
        raise ApiError("send the photo as the multipart field 'file'", field="file")
    form = request.form
    fields = {
        "description": text_field(form, "description", max_chars=uploads.MAX_DESCRIPTION_CHARS, required=False),
        "place": text_field(form, "place", max_chars=MAX_META_CHARS, required=False),
        "camera": text_field(form, "camera", max_chars=MAX_META_CHARS, required=False),
        "uploader": text_field(form, "uploader", max_chars=MAX_META_CHARS, required=False),
        "taken_at": datetime_field(form, "taken_at"),
    }
    session = get_session()
    added = uploads.add_photo(upload.read(), session=session, settings=_settings(), encoders=get_encoders(),
                              file_name=secure_filename(upload.filename or "") or None, **fields)
    session.commit()
    note_write()
    body = {"photo_id": added.photo_id, "duplicate_of": added.duplicate_of, "near_duplicates": added.near_duplicates,
            "image_url": url_for("photos.image", photo_id=added.photo_id)}
    status = 200 if added.duplicate_of is not None else 201
    return jsonify(body), status, {"Location": url_for("photos.photo", photo_id=added.photo_id)}


@bp.get("/api/photos/<int:photo_id>")
def photo(photo_id: int):
    # From a replica; not found there may only mean not replicated yet, so the primary is asked then.
    details = run_read(lambda session: uploads.details(session=session, photo=uploads.require(session=session, photo_id=photo_id)),
                       retry_on_primary=(uploads.PhotoNotFound,))
    details["image_url"] = url_for("photos.image", photo_id=photo_id)
    details["thumbnail_url"] = url_for("photos.thumbnail", photo_id=photo_id)
    return jsonify(details)


@bp.post("/api/photos/<int:photo_id>/descriptions")
def add_description(photo_id: int):
    require_write_token()
    body = json_body()
    text_ = text_field(body, "text", max_chars=uploads.MAX_DESCRIPTION_CHARS)
    author = text_field(body, "author", max_chars=MAX_META_CHARS, required=False)
    session = get_session()
    uploads.require(session=get_session(), photo_id=photo_id)
    description_id = uploads.add_description(session=session, settings=_settings(), text_encoder=get_encoders().text,
                                            photo_id=photo_id, text_=text_, source="user", author=author)
    session.commit()
    note_write()
    return jsonify({"description_id": description_id, "photo_id": photo_id, "text": text_, "author": author}), 201


@bp.get("/photos/<int:photo_id>/image")
def image(photo_id: int):
    photo = uploads.require(session=get_session(), photo_id=photo_id)
    path = photo_files.path_for(_settings().photo_store_dir, photo.storage_key)
    mimetype = MIMETYPES.get(path.suffix, "application/octet-stream")
    return send_file(path, mimetype=mimetype, max_age=86400, etag=photo.sha256)


@bp.get("/photos/<int:photo_id>/thumbnail")
def thumbnail(photo_id: int):
    """At most 256 px JPEG, made on first request and kept in the store's thumbnails/ folder."""
    photo = uploads.require(session=get_session(), photo_id=photo_id)
    settings = _settings()
    path = photo_files.path_for(settings.photo_store_dir, photo_files.thumbnail_key(photo.sha256))
    if not path.exists():
        original = photo_files.path_for(settings.photo_store_dir, photo.storage_key).read_bytes()
        photo_files.put(settings.photo_store_dir, photo_files.thumbnail_key(photo.sha256),
                    thumbnail_jpeg(original, max_pixels=settings.max_pixels))
    return send_file(path, mimetype="image/jpeg", max_age=86400, etag=f"thumb-{photo.sha256}")
