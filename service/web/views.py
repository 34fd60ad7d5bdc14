"""The web page: HTML shells for search, a photo and upload; static/app.js fills them from the JSON API.

The views only render templates. Everything the page shows comes from the API by fetch(), so the
page and curl see the same data. The API key is never rendered: the user types it once to sign
in (POST /api/session), and the browser keeps only an httpOnly session cookie. The pages speak English or Russian (service/web/i18n.py).
"""
from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask_babel import gettext
from sqlalchemy import select

from service.http.contract import DATABASE_ERRORS, PHOTO_ID, endpoint, responses
from service.http.db_session import get_session
from service.photos import child_marks
from service.policy import NOTICE
from service.store.tables import Photo
from service.web import i18n

# Templates and static files live in service/templates and service/static: the app's own folders.
bp = Blueprint("web", __name__)
bp.after_request(i18n.remember_choice)

DESCRIPTION_FORM_MAX = 500  # the forms' limit on a description (the API takes up to 2,000 characters)


@bp.get("/")
@endpoint(resp=responses({200: None}))
def index():
    """Web page: search."""
    return render_template("index.html")


@bp.get(f"/photos/{PHOTO_ID}")
@endpoint(resp=responses({200: None, 404: None}, DATABASE_ERRORS))
def photo(photo_id: int):
    """Web page: one photo (HTML, also for a photo that does not exist)."""
    row = get_session().execute(select(Photo.file_name, Photo.shows_child)
                                .where(Photo.id == photo_id, Photo.deleted_at.is_(None))).first()
    if row is None:
        return render_template("not_found.html", message=gettext("There is no photo %(id)s.", id=photo_id)), 404
    hidden = child_marks.withheld(row.shows_child, rule_on=current_app.config["WITHSENSE"].content_rule)
    # The notice in the page's language (app.js has the same msgid); the API keeps the English text.
    return render_template("photo.html", photo_id=photo_id, file_name=row.file_name,
                           notice=gettext(NOTICE) if hidden else None, max_text=DESCRIPTION_FORM_MAX)


@bp.get("/upload")
@endpoint(resp=responses({200: None}))
def upload():
    """Web page: the upload form."""
    return render_template("upload.html", max_text=DESCRIPTION_FORM_MAX)
