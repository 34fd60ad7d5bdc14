"""Accounts, ownership and one vote per person per pair (issue 17, items 1-3).

People and keys (service/accounts), every write's author from its key, 403 with the reason for a
write with another person's key, edits and deletion by owners, a deleted photo gone from search,
similar photos and pages at once (also while searches run), votes that replace a person's earlier
vote, per-person write limits, and the analyst's view of users without key hashes.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.helpers import new_user, wait_searchable
from tests.test_bad_input import snapshot
from tests.test_faults import _jpeg

ADMIN = {"Authorization": "Bearer test-token"}  # the bootstrap admin (WITHSENSE_API_TOKEN)
TIMEOUT = 60


@pytest.fixture(scope="module")
def people(writable):
    engine = writable["engine"]
    return {"ana": new_user(engine, "photographer"), "bo": new_user(engine, "photographer"),
            "cy": new_user(engine, "rater"), "di": new_user(engine, "admin")}


def _upload(base, seed: int, who: dict, **form) -> requests.Response:
    return requests.post(f"{base}/api/photos", files={"file": (f"p{seed}.jpg", _jpeg(seed))}, data=form,
                         headers=who["auth"] if "auth" in who else who, timeout=120)


def _search_ids(base, query: str, **extra) -> list[int]:
    r = requests.post(f"{base}/api/search", json={"query": query, "limit": 50, **extra}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return [hit["photo_id"] for hit in r.json()["results"]]


def _scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


@pytest.fixture(scope="module")
def anas_photo(writable_server, people):
    """A photo that ana (photographer) uploaded."""
    r = _upload(writable_server, 170001, people["ana"], description="a red lighthouse on a grey cliff")
    assert r.status_code == 201, r.text
    return r.json()["photo_id"]


# --- keys -----------------------------------------------------------------------------------

def test_a_key_is_recognisable_random_and_stored_only_as_its_hash():
    from service.accounts import keys

    made = keys.new_key()
    assert made.key.startswith("ws_") and keys.key_id_of(made.key) == made.key_id
    assert made.key_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$") and made.key not in made.key_hash
    assert keys.verify(made.key_hash, made.key)
    assert not keys.verify(made.key_hash, made.key[:-1] + ("A" if made.key[-1] != "A" else "B"))
    assert not keys.verify("not a hash", made.key)
    assert keys.new_key().key != made.key
    assert keys.key_id_of("ws_0123456789ab_short") is None and keys.key_id_of("test-token") is None


def test_the_database_holds_hashes_not_keys(writable, people):
    key = people["ana"]["key"]
    with writable["engine"].connect() as conn:
        rows = conn.execute(text("SELECT k.key_id, k.key_hash FROM api_keys k JOIN users u ON u.id = k.user_id "
                                 "WHERE u.name = :n"), {"n": people["ana"]["name"]}).all()
    assert len(rows) == 1 and rows[0].key_id == key[3:15] and key not in rows[0].key_hash
    assert key.split("_", 2)[2] not in rows[0].key_hash


def test_the_users_command_adds_lists_issues_and_revokes(writable, monkeypatch, capsys):
    from service import cli

    monkeypatch.setenv("DATABASE_URL", writable["settings"].database_url)
    name = f"eve-{uuid.uuid4().hex[:6]}"
    assert cli.main(["users", "add", name, "--role", "rater"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("ws_") and "shown only this once" in err
    assert cli.main(["users", "add", name, "--role", "rater"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert cli.main(["users", "add", "no spaces", "--role", "rater"]) == 1
    assert "not a valid user name" in capsys.readouterr().err
    assert cli.main(["users", "list"]) == 0
    listed = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [name, "rater", "1", "0"] in [row[1:5] for row in listed]
    assert ["bootstrap", "admin"] in [row[1:3] for row in listed]
    assert cli.main(["users", "key", name]) == 0
    second = capsys.readouterr().out.strip()
    assert second.startswith("ws_") and second != key
    assert cli.main(["users", "revoke", name, "--key-id", key[3:15]]) == 0
    assert "revoked 1 key(s)" in capsys.readouterr().out
    assert cli.main(["users", "revoke", name]) == 0
    assert "revoked 1 key(s)" in capsys.readouterr().out
    assert cli.main(["users", "revoke", "bootstrap"]) == 1
    assert "WITHSENSE_API_TOKEN" in capsys.readouterr().err
    assert cli.main(["users", "revoke", "nobody-at-all"]) == 1


def test_me_names_the_person_and_what_they_may_do(writable_server, people):
    r = requests.get(f"{writable_server}/api/me", headers=people["cy"]["auth"], timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json() == {"user_id": people["cy"]["user_id"], "name": people["cy"]["name"], "role": "rater",
                        "may": {"vote": "any photo"}}
    me = requests.get(f"{writable_server}/api/me", headers=ADMIN, timeout=TIMEOUT).json()
    assert (me["name"], me["role"]) == ("bootstrap", "admin") and set(me["may"]) == {
        "upload", "describe", "vote", "edit", "delete"}
    assert requests.get(f"{writable_server}/api/me", timeout=TIMEOUT).status_code == 401


def test_a_revoked_key_is_refused_from_the_next_request_on(writable_server, writable):
    from service.accounts import users
    from service.store.db import session_scope

    rater = new_user(writable["engine"], "rater")
    vote = {"photo_id": 1, "query": "a revoked voter", "match": True}
    assert requests.post(f"{writable_server}/api/ratings", json=vote, headers=rater["auth"],
                         timeout=TIMEOUT).status_code == 201
    with session_scope(writable["engine"]) as session:
        assert users.revoke(session=session, name=rater["name"]) == 1
    r = requests.post(f"{writable_server}/api/ratings", json=vote, headers=rater["auth"], timeout=TIMEOUT)
    assert r.status_code == 403 and "revoked" in r.json()["error"]
    r = requests.get(f"{writable_server}/api/me", headers=rater["auth"], timeout=TIMEOUT)
    assert r.status_code == 403


@pytest.mark.parametrize("token", ["ws_0123456789ab_" + "A" * 43, "ws_nonsense", "ws_"])
def test_an_unknown_or_malformed_key_is_403(writable_server, token):
    r = requests.post(f"{writable_server}/api/ratings", json={"photo_id": 1, "query": "x", "match": True},
                      headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
    assert r.status_code == 403 and r.json()["error"] == "the key is not valid"


def test_a_right_key_id_with_a_wrong_secret_is_403(writable_server, people):
    key = people["cy"]["key"]
    forged = key[:16] + ("A" if key[16] != "A" else "B") + key[17:]
    r = requests.post(f"{writable_server}/api/ratings", json={"photo_id": 1, "query": "x", "match": True},
                      headers={"Authorization": f"Bearer {forged}"}, timeout=TIMEOUT)
    assert r.status_code == 403 and r.json()["error"] == "the key is not valid"


# --- every write names its author -------------------------------------------------------------

def test_every_write_records_its_author_from_the_key(writable_server, writable, people, anas_photo):
    engine = writable["engine"]
    ana = people["ana"]
    assert _scalar(engine, "SELECT owner_id FROM photos WHERE id = :p", p=anas_photo) == ana["user_id"]
    assert _scalar(engine, "SELECT author_id FROM descriptions WHERE photo_id = :p", p=anas_photo) == ana["user_id"]
    r = requests.post(f"{writable_server}/api/photos/{anas_photo}/descriptions", headers=ana["auth"],
                      json={"text": "waves break below a lighthouse", "author": "someone else"}, timeout=TIMEOUT)
    assert r.status_code == 201 and r.json()["author"] == "someone else"  # a display name only
    assert _scalar(engine, "SELECT author_id FROM descriptions WHERE id = :d",
                   d=r.json()["description_id"]) == ana["user_id"]
    r = requests.post(f"{writable_server}/api/ratings", headers=people["cy"]["auth"], timeout=TIMEOUT,
                      json={"photo_id": anas_photo, "query": "a lighthouse", "match": True, "client": "ana"})
    assert r.status_code == 201
    assert _scalar(engine, "SELECT voter_id FROM crowd_votes WHERE id = :v", v=r.json()["vote_id"]) == people["cy"]["user_id"]
    details = requests.get(f"{writable_server}/api/photos/{anas_photo}", timeout=TIMEOUT).json()
    assert details["owner"] == ana["name"]


# --- a write with another person's key: 403 that says why -------------------------------------

def _writes(base, anas_photo, dataset_photo):
    """(name, who, request) for every write that the person may not make."""
    return [
        ("upload by a rater", "cy", lambda h: requests.post(
            f"{base}/api/photos", files={"file": ("x.jpg", _jpeg(170099))}, headers=h, timeout=TIMEOUT),
         "only photographers and admins may upload photos"),
        ("describing another's photo", "bo", lambda h: requests.post(
            f"{base}/api/photos/{anas_photo}/descriptions", json={"text": "mine now"}, headers=h, timeout=TIMEOUT),
         "another person's photo"),
        ("describing a dataset photo", "bo", lambda h: requests.post(
            f"{base}/api/photos/{dataset_photo}/descriptions", json={"text": "mine now"}, headers=h,
            timeout=TIMEOUT), "a dataset photo"),
        ("describing by a rater", "cy", lambda h: requests.post(
            f"{base}/api/photos/{anas_photo}/descriptions", json={"text": "mine now"}, headers=h, timeout=TIMEOUT),
         "only photographers and admins may describe photos"),
        ("voting on one's own photo", "ana", lambda h: requests.post(
            f"{base}/api/ratings", json={"photo_id": anas_photo, "query": "the best photo", "match": True},
            headers=h, timeout=TIMEOUT), "may not vote on their own photos"),
        ("editing another's photo", "bo", lambda h: requests.patch(
            f"{base}/api/photos/{anas_photo}", json={"place": "Nowhere"}, headers=h, timeout=TIMEOUT),
         "another person's photo"),
        ("editing a dataset photo", "ana", lambda h: requests.patch(
            f"{base}/api/photos/{dataset_photo}", json={"place": "Nowhere"}, headers=h, timeout=TIMEOUT),
         "a dataset photo"),
        ("editing by a rater", "cy", lambda h: requests.patch(
            f"{base}/api/photos/{anas_photo}", json={"place": "Nowhere"}, headers=h, timeout=TIMEOUT),
         "only photographers and admins may edit photos"),
        ("deleting another's photo", "bo", lambda h: requests.delete(
            f"{base}/api/photos/{anas_photo}", headers=h, timeout=TIMEOUT), "another person's photo"),
        ("deleting a dataset photo", "ana", lambda h: requests.delete(
            f"{base}/api/photos/{dataset_photo}", headers=h, timeout=TIMEOUT), "a dataset photo"),
        ("deleting by a rater", "cy", lambda h: requests.delete(
            f"{base}/api/photos/{anas_photo}", headers=h, timeout=TIMEOUT),
         "only photographers and admins may delete photos"),
    ]


def test_a_write_with_another_persons_key_is_refused_with_the_reason(writable_server, writable, people, anas_photo):
    dataset_photo = _scalar(writable["engine"], "SELECT min(id) FROM photos WHERE split = 'train'")
    wait_searchable(writable_server, anas_photo)
    before = snapshot(writable["engine"])
    for name, who, send, reason in _writes(writable_server, anas_photo, dataset_photo):
        r = send(people[who]["auth"])
        assert r.status_code == 403, (name, r.status_code, r.text)
        assert reason in r.json()["error"] and r.json()["status"] == 403, (name, r.json())
    assert snapshot(writable["engine"]) == before


def test_an_admin_may_edit_and_a_photographer_may_vote_on_others_photos(writable_server, people, anas_photo):
    r = requests.patch(f"{writable_server}/api/photos/{anas_photo}", json={"camera": "Leica M6"},
                       headers=people["di"]["auth"], timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["camera"] == "Leica M6"
    r = requests.post(f"{writable_server}/api/ratings", headers=people["bo"]["auth"], timeout=TIMEOUT,
                      json={"photo_id": anas_photo, "query": "a lighthouse", "match": True})
    assert r.status_code == 201


# --- edits by the owner ---------------------------------------------------------------------

def test_the_owner_edits_place_camera_taken_at_and_the_child_mark(writable_server, people):
    ana = people["ana"]
    photo_id = _upload(writable_server, 170002, ana, place="Bergen").json()["photo_id"]
    url = f"{writable_server}/api/photos/{photo_id}"
    r = requests.patch(url, headers=ana["auth"], timeout=TIMEOUT,
                       json={"place": "Oslo", "camera": "Fuji X100", "taken_at": "2022-07-01T08:00:00"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["place"], body["camera"], body["taken_at"]) == ("Oslo", "Fuji X100", "2022-07-01T08:00:00+00:00")
    r = requests.patch(url, headers=ana["auth"], json={"camera": None}, timeout=TIMEOUT)
    assert (r.json()["place"], r.json()["camera"]) == ("Oslo", None)  # only the fields sent change
    r = requests.patch(url, headers=ana["auth"], json={"shows_child": True}, timeout=TIMEOUT)
    assert r.json()["shows_child"] is True and r.json()["image_url"] is None
    r = requests.patch(url, headers=ana["auth"], json={"shows_child": False}, timeout=TIMEOUT)
    assert r.json()["shows_child"] is False and r.json()["image_url"] == f"/photos/{photo_id}/image"
    # A description about a child marks the photo; that mark is not the owner's to take back.
    requests.post(f"{url}/descriptions", headers=ana["auth"], timeout=TIMEOUT,
                  json={"text": "a little girl of five on a swing"})
    r = requests.patch(url, headers=ana["auth"], json={"shows_child": False}, timeout=TIMEOUT)
    assert r.status_code == 409 and r.json()["field"] == "shows_child" and "description" in r.json()["error"]


def _delete(library: dict, photo_id: int, who: dict) -> None:
    """Delete a photo as DELETE /api/photos/<id> does, its files too (the shared store must hold no
    orphans: test_api_photos checks it), in this thread's own transaction."""
    from sqlalchemy.orm import Session

    from service.photos import uploads

    with Session(library["engine"]) as session:
        storage_key, sha256 = uploads.delete_photo(session=session, photo_id=photo_id, user_id=who["user_id"])
        session.commit()
        uploads.remove_files(session=session, settings=library["settings"], storage_key=storage_key, sha256=sha256)


def _facets(engine, photo_id: int) -> dict[str, list]:
    """The facets beside each vector of the photo and of its descriptions (migration 0018)."""
    with engine.connect() as conn:
        return {"photo": conn.execute(text("SELECT DISTINCT facets FROM photo_embeddings WHERE photo_id = :p"),
                                      {"p": photo_id}).scalars().all(),
                "descriptions": conn.execute(text(
                    "SELECT DISTINCT de.facets FROM description_embeddings de JOIN descriptions d "
                    "ON d.id = de.description_id WHERE d.photo_id = :p"), {"p": photo_id}).scalars().all()}


def test_an_edited_place_is_what_a_filtered_search_finds_at_once(writable_server, writable, people):
    """The place, camera and uploader travel beside the vectors (migration 0018): an edit rewrites
    them on the photo's vectors and on its descriptions', so the next filtered search sees it."""
    engine, ana = writable["engine"], people["ana"]
    description = "a teal rowing boat tied to a birch jetty"
    photo_id = _upload(writable_server, 170004, ana, place="Bergen", camera="Nikon D750", uploader="Ana Lund",
                       description=description).json()["photo_id"]
    wait_searchable(writable_server, photo_id)
    uploader = "ana lund"
    assert _facets(engine, photo_id) == {
        "photo": [["place:bergen", "camera:nikon d750", f"uploader:{uploader}"]],
        "descriptions": [["place:bergen", "camera:nikon d750", f"uploader:{uploader}"]]}
    assert photo_id in _search_ids(writable_server, description, place="BERGEN")
    requests.patch(f"{writable_server}/api/photos/{photo_id}", headers=ana["auth"], timeout=TIMEOUT,
                   json={"place": "Ålesund", "camera": None}).raise_for_status()
    assert _facets(engine, photo_id) == {"photo": [["place:ålesund", f"uploader:{uploader}"]],
                                         "descriptions": [["place:ålesund", f"uploader:{uploader}"]]}
    assert photo_id not in _search_ids(writable_server, description, place="Bergen")
    assert photo_id not in _search_ids(writable_server, description, camera="Nikon D750")
    assert photo_id in _search_ids(writable_server, description, place="ÅLESUND", uploader="ANA LUND")


def _in_thread(work) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        work()
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done


def _set_place(engine, photo_id: int, place: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE photos SET place = :place WHERE id = :p"), {"place": place, "p": photo_id})


def test_a_description_vector_written_while_its_photo_is_edited_gets_the_new_place(writable_server, writable,
                                                                                   people, encoders):
    """A few vector rows in a short transaction hold their photos FOR SHARE (facets.share_described_photos,
    as loader.embed_descriptions writes them): an edit that starts meanwhile waits, then rewrites them."""
    from service.store.facets import share_described_photos
    from service.store.vectors import write_vectors

    engine = writable["engine"]
    photo_id = _upload(writable_server, 170005, people["ana"], place="Tromsø",
                       description="a yellow kayak on a frozen fjord").json()["photo_id"]
    with engine.begin() as conn:  # the description's MiniLM vector, gone as if not computed yet
        description_id, model_id = conn.execute(text(
            "DELETE FROM description_embeddings WHERE description_id = (SELECT min(id) FROM descriptions "
            "WHERE photo_id = :p) AND model_id = (SELECT id FROM models WHERE name = :name) "
            "RETURNING description_id, model_id"), {"p": photo_id, "name": f"text:{encoders.text.name}"}).one()
    with engine.begin() as writer:
        share_described_photos(writer, [description_id])
        write_vectors(writer, "description_embeddings", "description_id", model_id, [description_id],
                      encoders.text.encode(["a yellow kayak on a frozen fjord"]))
        editor, edited = _in_thread(lambda: _set_place(engine, photo_id, "Narvik"))
        assert not edited.wait(1.0)  # the edit waits for the writer's lock
    editor.join(30)
    assert edited.is_set()
    assert _facets(engine, photo_id) == {"photo": [["place:narvik"]], "descriptions": [["place:narvik"]]}


def test_a_ranker_row_written_while_its_photo_is_edited_or_deleted_is_settled(writable_server, writable, people):
    """A ranker's rows for many photos settle at the end of their transaction (facets.settle_ranker_rows,
    as a new ranker's are published): an edit or a deletion that committed meanwhile could not see
    them, and does not wait for them; the settling rewrites the one and drops the other."""
    from service.store.facets import settle_ranker_rows

    engine = writable["engine"]
    edited_photo = _upload(writable_server, 170006, people["ana"], place="Bodø").json()["photo_id"]
    deleted_photo = _upload(writable_server, 170007, people["ana"]).json()["photo_id"]
    for photo_id in (edited_photo, deleted_photo):
        wait_searchable(writable_server, photo_id)
    columns = "photo_id, model_id, embedding, bridge, label_ids, label_probs, mapper_norm"
    model_id = _scalar(engine, "SELECT id FROM models WHERE kind = 'ranker' AND active")
    with engine.begin() as conn:  # their rows under the active ranker, gone as if not projected yet
        rows = conn.execute(text(f"DELETE FROM photo_embeddings WHERE model_id = :m AND photo_id IN (:a, :b) "
                                 f"RETURNING {columns}"), {"m": model_id, "a": edited_photo, "b": deleted_photo}).all()
    assert len(rows) == 2

    row_facets = text("SELECT facets FROM photo_embeddings WHERE model_id = :m AND photo_id = :p")
    with engine.begin() as writer:
        for row in rows:
            writer.execute(text(f"INSERT INTO photo_embeddings ({columns}) VALUES (:photo_id, :model_id, "
                                ":embedding, :bridge, :label_ids, :label_probs, :mapper_norm)"), row._asdict())
        edit, delete = (lambda: _set_place(engine, edited_photo, "Narvik"),
                        lambda: _delete(writable, deleted_photo, people["ana"]))
        for work in (edit, delete):
            thread, done = _in_thread(work)
            thread.join(30)
            assert done.is_set()  # neither waits for the writer
        assert writer.execute(row_facets, {"m": model_id, "p": edited_photo}).scalar() == ["place:bodø"]  # the gap
        assert settle_ranker_rows(writer, model_id) == (1, 1)
    assert _scalar(engine, "SELECT facets FROM photo_embeddings WHERE model_id = :m AND photo_id = :p",
                   m=model_id, p=edited_photo) == ["place:narvik"]
    assert _scalar(engine, "SELECT count(*) FROM photo_embeddings WHERE photo_id = :p", p=deleted_photo) == 0


@pytest.mark.parametrize("body, fragment", [
    ({}, "at least one of"), ({"owner": "me"}, "not a field"), ({"shows_child": None}, "'shows_child' is required"),
    ({"taken_at": 12}, "date-time"), ({"place": "x" * 201}, "at most 200"), ({"place": " "}, "is empty"),
])
def test_bad_edits_are_400(writable_server, people, anas_photo, body, fragment):
    r = requests.patch(f"{writable_server}/api/photos/{anas_photo}", json=body, headers=people["ana"]["auth"],
                       timeout=TIMEOUT)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text


def test_unknown_photos_are_404_for_edit_and_delete(writable_server, people):
    for method in ("patch", "delete"):
        r = requests.request(method, f"{writable_server}/api/photos/987654321", json={"place": "x"},
                             headers=people["ana"]["auth"], timeout=TIMEOUT)
        assert r.status_code == 404, (method, r.text)


# --- deletion -------------------------------------------------------------------------------

def test_a_deleted_photo_is_gone_at_once_and_its_ratings_stay(writable_server, writable, people, encoders):
    engine, settings = writable["engine"], writable["settings"]
    ana, cy = people["ana"], people["cy"]
    description = "a violet umbrella abandoned on a wet zebra crossing"
    r = _upload(writable_server, 170003, ana, description=description)
    photo_id = r.json()["photo_id"]
    wait_searchable(writable_server, photo_id)
    other = _scalar(engine, "SELECT min(id) FROM photos WHERE split = 'train'")
    assert photo_id in _search_ids(writable_server, description)
    similar = requests.post(f"{writable_server}/api/search/similar", json={"photo_id": other, "limit": 50},
                            timeout=TIMEOUT).json()
    assert photo_id in [hit["photo_id"] for hit in similar["results"]]
    assert requests.get(f"{writable_server}/photos/{photo_id}/thumbnail", timeout=TIMEOUT).status_code == 200
    vote = requests.post(f"{writable_server}/api/ratings", headers=cy["auth"], timeout=TIMEOUT,
                         json={"photo_id": photo_id, "query": "an umbrella", "match": True})
    description_id = requests.get(f"{writable_server}/api/photos/{photo_id}", timeout=TIMEOUT).json()[
        "descriptions"][0]["description_id"]
    paths = [settings.photo_store_dir / key for key in [_scalar(
        engine, "SELECT storage_key FROM photos WHERE id = :p", p=photo_id)]]
    assert all(path.is_file() for path in paths)

    r = requests.delete(f"{writable_server}/api/photos/{photo_id}", headers=ana["auth"], timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["photo_id"] == photo_id and r.json()["deleted"] is True

    # Gone at once: from search, similar photos, the API, the page and the files.
    assert photo_id not in _search_ids(writable_server, description)
    similar = requests.post(f"{writable_server}/api/search/similar", json={"photo_id": other, "limit": 50},
                            timeout=TIMEOUT).json()
    assert photo_id not in [hit["photo_id"] for hit in similar["results"]]
    for path in (f"/api/photos/{photo_id}", f"/photos/{photo_id}/image", f"/photos/{photo_id}/thumbnail",
                 f"/photos/{photo_id}"):
        assert requests.get(f"{writable_server}{path}", timeout=TIMEOUT).status_code == 404, path
    r = requests.post(f"{writable_server}/api/search/similar", json={"photo_id": photo_id}, timeout=TIMEOUT)
    assert r.status_code == 404
    assert not any(path.exists() for path in paths)
    assert not list(settings.photo_store_dir.glob(f"thumbnails/**/{paths[0].stem}.jpg"))
    assert _scalar(engine, "SELECT count(*) FROM photo_embeddings WHERE photo_id = :p", p=photo_id) == 0
    assert _scalar(engine, "SELECT count(*) FROM embedding_jobs WHERE photo_id = :p", p=photo_id) == 0
    # Its descriptions' vectors go too (a description search then needs no tombstone check), and
    # `withsense ingest` does not compute them again.
    from service.ingest.loader import embed_descriptions

    assert embed_descriptions(engine, settings, encoders.text, progress=False) == 0
    assert _scalar(engine, "SELECT count(*) FROM description_embeddings WHERE description_id = :d",
                   d=description_id) == 0
    # Its descriptions and ratings stay, marked by the tombstone.
    with engine.connect() as conn:
        tomb = conn.execute(text("SELECT deleted_at, deleted_by FROM photos WHERE id = :p"), {"p": photo_id}).one()
        assert tomb.deleted_at is not None and tomb.deleted_by == ana["user_id"]
        assert conn.execute(text("SELECT count(*) FROM crowd_votes WHERE id = :v"),
                            {"v": vote.json()["vote_id"]}).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM descriptions WHERE id = :d"), {"d": description_id}).scalar() == 1
    # No more writes to it, and its bytes cannot come back under a new id.
    assert requests.delete(f"{writable_server}/api/photos/{photo_id}", headers=ana["auth"],
                           timeout=TIMEOUT).status_code == 404
    assert requests.post(f"{writable_server}/api/ratings", headers=cy["auth"], timeout=TIMEOUT, json={
        "photo_id": photo_id, "query": "an umbrella", "match": False}).status_code == 404
    again = _upload(writable_server, 170003, ana)
    assert again.status_code == 409 and again.json()["field"] == "file" and "was deleted" in again.json()["error"]


def test_an_admin_deletes_any_photo(writable_server, writable, people):
    photo_id = _upload(writable_server, 170004, people["bo"]).json()["photo_id"]
    r = requests.delete(f"{writable_server}/api/photos/{photo_id}", headers=people["di"]["auth"], timeout=TIMEOUT)
    assert r.status_code == 200
    assert _scalar(writable["engine"], "SELECT deleted_by FROM photos WHERE id = :p", p=photo_id) == people["di"]["user_id"]


def test_deleting_a_photo_whose_vectors_are_being_computed_leaves_no_vectors(writable_server, writable, people):
    """Deleted right after the upload, while the server's worker may hold its job: the deletion
    waits for that worker's commit and then deletes what it wrote (uploads.TOMBSTONE_SQL's order)."""
    engine = writable["engine"]
    for seed in range(170010, 170016):
        photo_id = _upload(writable_server, seed, people["ana"]).json()["photo_id"]
        r = requests.delete(f"{writable_server}/api/photos/{photo_id}", headers=people["ana"]["auth"],
                            timeout=TIMEOUT)
        assert r.status_code == 200
        assert _scalar(engine, "SELECT count(*) FROM photo_embeddings WHERE photo_id = :p", p=photo_id) == 0
        assert _scalar(engine, "SELECT count(*) FROM embedding_jobs WHERE photo_id = :p", p=photo_id) == 0
    time.sleep(1.0)  # anything a worker still had in hand has landed by now
    assert _scalar(engine, "SELECT count(*) FROM photo_embeddings e JOIN photos p ON p.id = e.photo_id "
                           "WHERE p.deleted_at IS NOT NULL") == 0


def test_a_description_written_while_its_photo_is_deleted_leaves_no_vectors(writable_server, writable, people,
                                                                           encoders):
    """A description's writer holds its photo FOR SHARE until it commits (uploads.add_description):
    a deletion that starts meanwhile waits, then deletes the new description's vectors; a writer
    that comes after the deletion finds no photo."""
    from sqlalchemy.orm import Session

    from service.photos import uploads

    engine, settings = writable["engine"], writable["settings"]
    photo_id = _upload(writable_server, 170031, people["ana"]).json()["photo_id"]

    def describe(session: Session) -> int:
        return uploads.add_description(session=session, settings=settings, text_encoder=encoders.text,
                                       photo_id=photo_id, text_="a red kite over a grey beach", source="user",
                                       author=None, multilingual=encoders.multilingual)

    with Session(engine) as writer:
        description_id = describe(writer)
        deleter, deleted = _in_thread(lambda: _delete(writable, photo_id, people["ana"]))
        assert not deleted.wait(1.0)  # the tombstone waits for the writer's lock
        writer.commit()
    deleter.join(30)
    assert deleted.is_set()
    assert _scalar(engine, "SELECT count(*) FROM description_embeddings WHERE description_id = :d",
                   d=description_id) == 0
    with Session(engine) as late, pytest.raises(uploads.PhotoNotFound):
        describe(late)


@pytest.fixture(scope="module")
def unlimited_server(writable, encoders):
    """The writable library's app with the search rate limit off (the test below searches non-stop)."""
    from tests.helpers import app_for, serve

    base, httpd = serve(app_for(writable, encoders, rate_limit=0))
    yield base
    httpd.shutdown()


def test_searches_running_while_a_photo_is_deleted_do_not_fail(unlimited_server, people):
    writable_server = unlimited_server
    description = "a yellow kite tangled in the branches of a bare oak"
    photo_id = _upload(writable_server, 170005, people["ana"], description=description).json()["photo_id"]
    wait_searchable(writable_server, photo_id)
    deleted_at = []  # perf_counter when the DELETE answered
    answers, stop = [], threading.Event()

    def keep_searching():
        with requests.Session() as session:
            while not stop.is_set():
                started = time.perf_counter()
                for path, body in (("/api/search", {"query": description, "limit": 50}),
                                   ("/api/search/similar", {"photo_id": 1, "limit": 50})):
                    r = session.post(f"{writable_server}{path}", json=body, timeout=TIMEOUT)
                    ids = [hit["photo_id"] for hit in r.json()["results"]] if r.status_code == 200 else None
                    answers.append((started, r.status_code, ids))

    threads = [threading.Thread(target=keep_searching) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    r = requests.delete(f"{writable_server}/api/photos/{photo_id}", headers=people["ana"]["auth"], timeout=TIMEOUT)
    deleted_at.append(time.perf_counter())
    assert r.status_code == 200
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert answers and {status for _, status, _ in answers} == {200}, {s for _, s, _ in answers}
    before = [ids for started, _, ids in answers if started < deleted_at[0]]
    after = [ids for started, _, ids in answers if started > deleted_at[0]]
    assert any(photo_id in ids for ids in before) and after
    assert not any(photo_id in ids for ids in after)


# --- one vote per person per pair -----------------------------------------------------------

def test_a_later_vote_replaces_the_earlier_one(writable_server, writable, people, anas_photo):
    engine = writable["engine"]
    rater, other = new_user(engine, "rater"), new_user(engine, "rater")
    description_id = _scalar(engine, "SELECT min(id) FROM descriptions WHERE photo_id = :p", p=anas_photo)

    def vote(who, **body):
        return requests.post(f"{writable_server}/api/ratings", headers=who["auth"], timeout=TIMEOUT,
                             json={"photo_id": anas_photo, **body})

    first = vote(rater, description_id=description_id, match=True)
    second = vote(rater, description_id=description_id, match=False)
    assert (first.status_code, first.json()["replaced"]) == (201, False)
    assert (second.status_code, second.json()["replaced"]) == (200, True)
    assert second.json()["vote_id"] == first.json()["vote_id"]
    assert vote(other, description_id=description_id, match=True).status_code == 201
    q1 = vote(rater, query="a  lighthouse at dusk ", match=True)
    q2 = vote(rater, query="a lighthouse at dusk", match=False)
    assert q1.json()["query"] == "a lighthouse at dusk" and q2.status_code == 200
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT voter_id, description_id, query, match FROM crowd_votes WHERE photo_id = :p AND voter_id = ANY(:v) "
            "ORDER BY voter_id, description_id NULLS LAST"), {"p": anas_photo, "v": [rater["user_id"], other["user_id"]]}).all()
        assert [tuple(r) for r in rows] == [(rater["user_id"], description_id, None, False),
                                           (rater["user_id"], None, "a lighthouse at dusk", False),
                                           (other["user_id"], description_id, None, True)]
        live = conn.execute(text("SELECT live_yes, live_no FROM analyst_rated_pairs WHERE photo_id = :p "
                                 "AND description_id = :d"), {"p": anas_photo, "d": description_id}).one()
    assert tuple(live) == (1, 1)


def test_votes_from_before_accounts_stay_as_they_were(writable, anas_photo):
    """Rows without a voter (before migration 0011) are not one person: the unique indexes skip them."""
    with writable["engine"].begin() as conn:
        for _ in range(2):
            conn.execute(text("INSERT INTO crowd_votes (photo_id, query, match, client) "
                              "VALUES (:p, 'an old vote', true, 'old-client')"), {"p": anas_photo})
    assert _scalar(writable["engine"], "SELECT count(*) FROM crowd_votes WHERE photo_id = :p AND query = 'an old vote'",
                   p=anas_photo) == 2


def test_the_database_refuses_a_second_row_for_the_same_voter_and_pair(writable, people, anas_photo):
    with pytest.raises(DBAPIError, match="uq_crowd_votes_voter_query"):
        with writable["engine"].begin() as conn:
            for _ in range(2):
                conn.execute(text("INSERT INTO crowd_votes (photo_id, query, match, voter_id) "
                                  "VALUES (:p, 'twice', true, :v)"), {"p": anas_photo, "v": people["cy"]["user_id"]})


# --- per-person write limit -----------------------------------------------------------------

def test_writes_are_limited_per_person_not_per_address(writable, encoders):
    from tests.helpers import app_for

    client = app_for(writable, encoders, write_rate_limit=2).test_client()
    first, second = new_user(writable["engine"], "rater"), new_user(writable["engine"], "rater")

    def vote(who, addr):
        return client.post("/api/ratings", json={"photo_id": 1, "query": f"limit {uuid.uuid4().hex}", "match": True},
                           headers=who["auth"] if "auth" in who else who, environ_base={"REMOTE_ADDR": addr})

    assert vote(first, "10.0.0.1").status_code == 201
    assert vote(first, "10.0.0.2").status_code == 201  # another address: the same person
    r = vote(first, "10.0.0.3")
    assert r.status_code == 429 and "at most 2 per minute per person" in r.json["error"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert vote(second, "10.0.0.1").status_code == 201  # the same address: another person
    for _ in range(3):
        assert vote(ADMIN, "10.0.0.1").status_code == 201  # admins are not limited


def test_zero_turns_the_write_limit_off(writable, encoders):
    from tests.helpers import app_for

    assert "withsense.write_ratelimit" not in app_for(writable, encoders, write_rate_limit=0).extensions


# --- analysts see users, never keys ---------------------------------------------------------

def test_analysts_read_users_in_a_view_without_keys(writable_analyst, people):
    with writable_analyst.connect() as conn:
        rows = {r["name"]: r for r in conn.execute(text("SELECT * FROM analyst_users")).mappings()}
    assert rows[people["ana"]["name"]]["role"] == "photographer" and rows[people["ana"]["name"]]["active_keys"] == 1
    assert rows["bootstrap"]["role"] == "admin"
    columns = set(next(iter(rows.values())).keys())
    assert columns == {"user_id", "name", "role", "created_at", "active_keys", "revoked_keys",
                       "last_key_created_at", "last_key_revoked_at"}


@pytest.mark.parametrize("statement", ["SELECT key_hash FROM api_keys", "SELECT * FROM api_keys",
                                       "SELECT * FROM users", "SELECT count(*) FROM users"])
def test_analysts_cannot_read_the_tables_behind_it(writable_analyst, statement):
    with pytest.raises(DBAPIError, match="permission denied"):
        with writable_analyst.connect() as conn:
            conn.execute(text(statement))


def test_analysts_see_which_ratings_belong_to_deleted_photos(writable_analyst, writable_server, people):
    photo_id = _upload(writable_server, 170020, people["ana"]).json()["photo_id"]
    vote = requests.post(f"{writable_server}/api/ratings", headers=people["cy"]["auth"], timeout=TIMEOUT,
                         json={"photo_id": photo_id, "query": "a photo soon deleted", "match": True}).json()
    assert requests.delete(f"{writable_server}/api/photos/{photo_id}", headers=people["ana"]["auth"],
                           timeout=TIMEOUT).status_code == 200
    with writable_analyst.connect() as conn:
        rows = dict(conn.execute(text(
            "SELECT v.id, p.deleted_at IS NOT NULL AS photo_deleted FROM crowd_votes v "
            "JOIN photos p ON p.id = v.photo_id")).all())
    assert rows[vote["vote_id"]] is True
