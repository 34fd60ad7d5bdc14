"""Photos: image files, served only by photo id."""
from __future__ import annotations

from flask import Blueprint, current_app, send_file
from sqlalchemy import select

from service import storage
from service.db import get_session
from service.errors import ApiError
from service.images import ACCEPTED_FORMATS, EXTENSIONS
from service.models import Photo

bp = Blueprint("photos", __name__)

MIMETYPES = {ext: ACCEPTED_FORMATS[fmt] for fmt, ext in EXTENSIONS.items()}


def get_photo(photo_id: int) -> Photo:
    photo = get_session().scalar(select(Photo).where(Photo.id == photo_id))
    if photo is None:
        raise ApiError(f"photo {photo_id} does not exist", 404)
    return photo


@bp.get("/photos/<int:photo_id>/image")
def image(photo_id: int):
    photo = get_photo(photo_id)
    path = storage.path_for(current_app.config["WITHSENSE"].photo_store_dir, photo.storage_key)
    mimetype = MIMETYPES.get(path.suffix, "application/octet-stream")
    return send_file(path, mimetype=mimetype, max_age=86400, etag=photo.sha256)
