"""The content rule's mark on photos: a photo shows a child when one of its descriptions is about
a child (``service.policy``) or its uploader says so.

The mark is data, kept whatever the deployment's setting (``WITHSENSE_CONTENT_RULE`` only decides
whether responses withhold marked photos and flagged texts), so switching the rule on later needs
no recomputation. A mark is never removed by a later description: one flagged text is enough.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text

from service.policy import NOTICE, is_about_children


class PhotoWithheld(PermissionError):
    """The photo shows a child: its image is not served (451 at the HTTP edge, with the notice)."""

    def __init__(self, photo_id: int):
        super().__init__(NOTICE)
        self.photo_id = photo_id


def withheld(photo_shows_child: bool, *, rule_on: bool) -> bool:
    return bool(rule_on and photo_shows_child)


MARK_SQL = text(
    """UPDATE photos SET shows_child = true, shows_child_source = :source
       WHERE id = ANY(:photo_ids) AND NOT shows_child"""
)


def mark(conn, photo_ids: Iterable[int], *, source: str) -> int:
    """Mark photos (a Connection or a Session); returns how many were newly marked."""
    ids = sorted({int(i) for i in photo_ids})
    if not ids:
        return 0
    return conn.execute(MARK_SQL, {"photo_ids": ids, "source": source}).rowcount


def mark_described(conn, described: Iterable[tuple[int | None, str]]) -> int:
    """Mark the photos whose (photo_id, description text) pairs include a text about a child."""
    return mark(conn, [photo_id for photo_id, text_ in described if photo_id is not None and is_about_children(text_)],
                source="description")


def shown_text(text_: str, *, rule_on: bool) -> str:
    """A description as responses show it: the notice in place of a text the rule flags."""
    return NOTICE if rule_on and is_about_children(text_) else text_
