"""The content rule covers photos and texts, not only queries (issue 12, point 7).

A photo is marked when one of its descriptions is about a child or its uploader says so; the mark
is stored (analysts see it). A marked photo still ranks, but its result carries the notice and no
image URL, its image and thumbnail answer 451 with the notice, and every flagged description is
shown as the notice. One setting turns the rule off. Real server, real database, real models.
"""
from __future__ import annotations

import requests
from sqlalchemy import text

from service.policy import NOTICE, is_about_children
from tests.helpers import app_for, serve
from tests.test_faults import _jpeg

AUTH = {"Authorization": "Bearer test-token"}
TIMEOUT = 60


def _marks(engine) -> dict[int, tuple[bool, str | None]]:
    with engine.connect() as conn:
        return {r.id: (r.shows_child, r.shows_child_source)
                for r in conn.execute(text("SELECT id, shows_child, shows_child_source FROM photos"))}


def _upload(base: str, seed: int, **form) -> dict:
    r = requests.post(f"{base}/api/photos", files={"file": (f"p{seed}.jpg", _jpeg(seed))}, data=form,
                      headers=AUTH, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    return r.json()


def test_dataset_photos_are_marked_exactly_when_a_description_is_about_a_child(loaded):
    with loaded["engine"].connect() as conn:
        texts = conn.execute(text("SELECT photo_id, text FROM descriptions WHERE photo_id IS NOT NULL")).all()
    expected = {photo_id for photo_id, t in texts if is_about_children(t)}
    marks = _marks(loaded["engine"])
    assert expected, "the fixture dataset has descriptions about children"
    assert {pid for pid, (shows, _) in marks.items() if shows} == expected
    assert all(source == "description" for pid, (shows, source) in marks.items() if shows)
    assert len(expected) < len(marks), "and photos that are not marked"


def test_a_marked_photo_ranks_with_the_notice_and_no_image(live_server, loaded):
    marks = _marks(loaded["engine"])
    r = requests.post(f"{live_server}/api/search", json={"query": "people on a beach", "limit": 16}, timeout=TIMEOUT)
    assert r.status_code == 200
    results = r.json()["results"]
    withheld = [x for x in results if marks[x["photo_id"]][0]]
    shown = [x for x in results if not marks[x["photo_id"]][0]]
    assert withheld and shown
    assert all(x["image_url"] is None and x["notice"] == NOTICE and 0 <= x["score"] <= 1 for x in withheld)
    assert all(x["image_url"] == f"/photos/{x['photo_id']}/image" and "notice" not in x for x in shown)


def test_the_image_and_thumbnail_of_a_marked_photo_are_451(live_server, loaded):
    marks = _marks(loaded["engine"])
    marked = min(pid for pid, (shows, _) in marks.items() if shows)
    clear = min(pid for pid, (shows, _) in marks.items() if not shows)
    for kind in ("image", "thumbnail"):
        r = requests.get(f"{live_server}/photos/{marked}/{kind}", timeout=TIMEOUT)
        assert r.status_code == 451 and r.json() == {"error": NOTICE, "status": 451}
        assert requests.get(f"{live_server}/photos/{clear}/{kind}", timeout=TIMEOUT).status_code == 200


def test_details_show_the_notice_in_place_of_flagged_descriptions(live_server, loaded):
    marks = _marks(loaded["engine"])
    marked = min(pid for pid, (shows, _) in marks.items() if shows)
    details = requests.get(f"{live_server}/api/photos/{marked}", timeout=TIMEOUT).json()
    assert details["shows_child"] is True and details["notice"] == NOTICE
    assert details["image_url"] is None and details["thumbnail_url"] is None
    texts = [d["text"] for d in details["descriptions"]]
    assert NOTICE in texts and not any(is_about_children(t) for t in texts)
    page = requests.get(f"{live_server}/photos/{marked}", timeout=TIMEOUT).text
    assert NOTICE in page and f"/photos/{marked}/image" not in page


def test_the_uploader_marks_a_photo(writable_server, writable):
    added = _upload(writable_server, 777001, shows_child="true")
    assert added["image_url"] is None and added["notice"] == NOTICE
    assert _marks(writable["engine"])[added["photo_id"]] == (True, "uploader")
    assert requests.get(f"{writable_server}/photos/{added['photo_id']}/image", timeout=TIMEOUT).status_code == 451


def test_a_description_added_later_marks_the_photo(writable_server, writable):
    added = _upload(writable_server, 777002, description="a red tractor in a field")
    photo_id = added["photo_id"]
    assert added["image_url"] == f"/photos/{photo_id}/image"
    assert _marks(writable["engine"])[photo_id] == (False, None)
    r = requests.post(f"{writable_server}/api/photos/{photo_id}/descriptions",
                      json={"text": "a little girl sits on the tractor"}, headers=AUTH, timeout=TIMEOUT)
    assert r.status_code == 201 and r.json()["text"] == NOTICE
    assert _marks(writable["engine"])[photo_id] == (True, "description")
    details = requests.get(f"{writable_server}/api/photos/{photo_id}", timeout=TIMEOUT).json()
    assert [d["text"] for d in details["descriptions"]] == ["a red tractor in a field", NOTICE]
    assert requests.get(f"{writable_server}/photos/{photo_id}/thumbnail", timeout=TIMEOUT).status_code == 451
    with writable["engine"].connect() as conn:  # the text itself is kept: the mark is what changed
        stored = conn.execute(text("SELECT text FROM descriptions WHERE photo_id = :p ORDER BY id"), {"p": photo_id})
        assert [t for (t,) in stored] == ["a red tractor in a field", "a little girl sits on the tractor"]


def test_a_query_about_children_still_returns_only_the_notice(live_server):
    r = requests.post(f"{live_server}/api/search", json={"query": "two kids playing"}, timeout=TIMEOUT)
    body = r.json()
    assert r.status_code == 200 and body["blocked"] is True and body["results"] == [] and body["notice"] == NOTICE


def test_similar_photos_withhold_marked_ones(live_server, loaded):
    marks = _marks(loaded["engine"])
    clear = min(pid for pid, (shows, _) in marks.items() if not shows)
    results = requests.post(f"{live_server}/api/search/similar", json={"photo_id": clear, "limit": 15},
                            timeout=TIMEOUT).json()["results"]
    assert any(marks[x["photo_id"]][0] for x in results)
    for x in results:
        assert (x["image_url"] is None) == marks[x["photo_id"]][0]


def test_analysts_see_the_mark(loaded):
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(loaded["settings"].database_url).set(username="analyst", password=None)
    engine = create_engine(url)
    with engine.connect() as conn:
        marked = conn.execute(text("SELECT count(*) FROM photos WHERE shows_child")).scalar()
    engine.dispose()
    assert marked == sum(shows for shows, _ in _marks(loaded["engine"]).values()) > 0


def test_the_setting_turns_the_rule_off(loaded, encoders):
    app = app_for(loaded, encoders, content_rule=False)
    base, server = serve(app)
    try:
        marks = _marks(loaded["engine"])
        marked = min(pid for pid, (shows, _) in marks.items() if shows)
        assert requests.get(f"{base}/photos/{marked}/image", timeout=TIMEOUT).status_code == 200
        details = requests.get(f"{base}/api/photos/{marked}", timeout=TIMEOUT).json()
        assert details["notice"] is None and details["image_url"] == f"/photos/{marked}/image"
        assert any(is_about_children(d["text"]) for d in details["descriptions"])
        r = requests.post(f"{base}/api/search", json={"query": "two kids playing"}, timeout=TIMEOUT).json()
        assert r["blocked"] is False and r["results"]
    finally:
        server.shutdown()
