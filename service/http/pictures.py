"""Where a photo's picture is in a response: its URLs, or the legal notice in their place when the
content rule withholds the photo. One place, so search results, similar photos, the upload answer
and the photo details always agree."""
from __future__ import annotations

from flask import current_app, url_for

from service.photos import child_marks
from service.policy import NOTICE


def picture(photo_id: int, shows_child: bool, *, thumbnail: bool = False) -> dict:
    """``{"image_url"[, "thumbnail_url"]}``, or the same keys as null plus ``"notice"``."""
    if child_marks.withheld(shows_child, rule_on=current_app.config["WITHSENSE"].content_rule):
        return {"image_url": None, **({"thumbnail_url": None} if thumbnail else {}), "notice": NOTICE}
    urls = {"image_url": url_for("photos.image", photo_id=photo_id)}
    if thumbnail:
        urls["thumbnail_url"] = url_for("photos.thumbnail", photo_id=photo_id)
    return urls
