"""Photos over real HTTP: upload (auth, formats, duplicates), metadata, descriptions, ratings, thumbnails."""
import io

import pytest
import requests
from PIL import Image
from sqlalchemy import text

from tests.helpers import FIXTURE_DATASET, new_user, wait_searchable

AUTH = {"Authorization": "Bearer test-token"}
TRAIN_PHOTO = FIXTURE_DATASET / "train_images" / "1425069308_488e5fcf9d.jpg"


def _count(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def _png(size=(64, 48), mode="RGBA", color=(10, 200, 30, 128)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, "PNG")
    return out.getvalue()


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", **kwargs)
    return out.getvalue()


def _striped(seed: int, size=(120, 90)) -> Image.Image:
    """A distinct synthetic picture per seed, so fingerprints differ between tests."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (9, 12, 3), dtype=np.uint8)
    return Image.fromarray(base).resize(size, Image.NEAREST)


def _upload(base, data, name="photo.jpg", headers=AUTH, **form):
    return requests.post(f"{base}/api/photos", files={"file": (name, data)}, data=form, headers=headers, timeout=120)


def test_upload_then_same_bytes_is_a_duplicate(writable_server, writable):
    engine = writable["engine"]
    data = _jpeg(_striped(1))
    before = _count(engine, "SELECT count(*) FROM photos")
    first = _upload(writable_server, data, place="Oslo", camera="Nikon D750", taken_at="2023-06-01T10:00:00Z")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["duplicate_of"] is None and isinstance(body["photo_id"], int)
    assert _count(engine, "SELECT count(*) FROM photos") == before + 1
    again = _upload(writable_server, data)
    assert again.status_code == 200
    assert again.json()["duplicate_of"] == body["photo_id"] == again.json()["photo_id"]
    assert _count(engine, "SELECT count(*) FROM photos") == before + 1
    wait_searchable(writable_server, body["photo_id"])
    with engine.connect() as conn:
        row = conn.execute(text("SELECT split, place, camera, taken_at FROM photos WHERE id = :i"),
                           {"i": body["photo_id"]}).one()
        n_vectors = conn.execute(text("SELECT count(*) FROM photo_embeddings WHERE photo_id = :i"),
                                 {"i": body["photo_id"]}).scalar()
    assert row.split == "upload" and row.place == "Oslo" and row.camera == "Nikon D750"
    assert row.taken_at.year == 2023
    assert n_vectors == 3  # image features, fingerprint, joint vector under the active ranker


def test_resized_reencoded_copy_is_a_near_duplicate(writable_server, writable):
    original = Image.open(TRAIN_PHOTO)
    smaller = original.resize((original.width * 6 // 10, original.height * 6 // 10))
    r = _upload(writable_server, _jpeg(smaller, quality=70), name="copy.jpg")
    assert r.status_code == 201, r.text
    with writable["engine"].connect() as conn:
        original_id = conn.execute(text("SELECT id FROM photos WHERE file_name = :f"), {"f": TRAIN_PHOTO.name}).scalar()
    near = r.json()["near_duplicates"]
    assert [n["photo_id"] for n in near] == [original_id]
    assert near[0]["distance"] < 0.02


def test_a_different_photo_has_no_near_duplicates(writable_server):
    r = _upload(writable_server, _jpeg(_striped(2)))
    assert r.status_code == 201 and r.json()["near_duplicates"] == []


@pytest.mark.parametrize("name, data", [
    ("alpha.png", _png()),
    ("cmyk.jpg", _jpeg(Image.new("CMYK", (80, 60), (0, 200, 200, 0)))),
    ("deep.png", None),  # 16-bit greyscale, built below
    ("photo.webp", None),
])
def test_formats_are_accepted_and_converted(writable_server, writable, name, data):
    if name == "deep.png":
        import numpy as np

        out = io.BytesIO()
        deep = Image.fromarray((np.arange(70 * 50).reshape(50, 70) * 18).astype(np.uint16))
        assert deep.mode == "I;16"
        deep.save(out, "PNG")
        data = out.getvalue()
    if name == "photo.webp":
        out = io.BytesIO()
        _striped(3).save(out, "WEBP")
        data = out.getvalue()
    r = _upload(writable_server, data, name=name)
    assert r.status_code == 201, r.text
    thumb = requests.get(f"{writable_server}/photos/{r.json()['photo_id']}/thumbnail", timeout=30)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).mode == "RGB"


def test_exif_rotation_is_applied(writable_server, writable):
    image = _striped(4, size=(600, 300))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    r = _upload(writable_server, _jpeg(image, exif=exif), name="rotated.jpg")
    assert r.status_code == 201
    with writable["engine"].connect() as conn:
        w, h = conn.execute(text("SELECT width, height FROM photos WHERE id = :i"), {"i": r.json()["photo_id"]}).one()
    assert (w, h) == (300, 600)
    thumb = Image.open(io.BytesIO(requests.get(f"{writable_server}/photos/{r.json()['photo_id']}/thumbnail", timeout=30).content))
    assert thumb.size == (128, 256)


@pytest.mark.parametrize("headers, status", [({}, 401), ({"Authorization": "Bearer wrong"}, 403),
                                             ({"Authorization": "Basic dGVzdA=="}, 401)])
def test_upload_needs_the_token(writable_server, writable, headers, status):
    before = _count(writable["engine"], "SELECT count(*) FROM photos")
    r = _upload(writable_server, _png(), headers=headers)
    assert r.status_code == status and r.json()["error"]
    assert _count(writable["engine"], "SELECT count(*) FROM photos") == before


def test_without_a_configured_token_writes_are_refused(writable, encoders):
    from tests.helpers import app_for

    client = app_for(writable, encoders, api_token="").test_client()
    r = client.post("/api/photos", data={"file": (io.BytesIO(_png()), "a.png")}, headers=AUTH)
    assert r.status_code == 403 and "no bootstrap token is configured" in r.json["error"]


@pytest.mark.parametrize("name, data, fragment", [
    ("empty.jpg", b"", "empty"),
    ("notes.txt", b"hello, not an image", "not a readable image"),
    ("anim.gif", None, "GIF is not accepted"),
    ("cut.jpg", None, "not a readable image"),
])
def test_bad_files_are_rejected(writable_server, writable, name, data, fragment):
    if name == "anim.gif":
        out = io.BytesIO()
        Image.new("RGB", (10, 10)).save(out, "GIF")
        data = out.getvalue()
    if name == "cut.jpg":
        data = _jpeg(_striped(5))[:400]
    before = _count(writable["engine"], "SELECT count(*) FROM photos")
    r = _upload(writable_server, data, name=name)
    assert r.status_code == 422 and fragment in r.json()["error"] and r.json()["field"] == "file"
    assert _count(writable["engine"], "SELECT count(*) FROM photos") == before


def test_too_many_pixels_is_rejected(writable, encoders):
    from tests.helpers import app_for

    client = app_for(writable, encoders, max_pixels=1000).test_client()
    r = client.post("/api/photos", data={"file": (io.BytesIO(_png(size=(50, 50))), "big.png")}, headers=AUTH)
    assert r.status_code == 422 and "limit is 1000" in r.json["error"]


def test_too_large_a_body_is_413(writable_server):
    r = _upload(writable_server, b"\xff" * (21 * 1024 * 1024))
    assert r.status_code == 413 and r.json()["status"] == 413


def test_upload_without_file_is_400(writable_server):
    r = requests.post(f"{writable_server}/api/photos", files={"place": (None, "x")}, headers=AUTH, timeout=10)
    assert r.status_code == 400 and r.json()["field"] == "file"


def test_upload_as_urlencoded_form_is_415(writable_server):
    r = requests.post(f"{writable_server}/api/photos", data={"place": "x"}, headers=AUTH, timeout=10)
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]


def test_photo_details(writable_server, writable):
    r = _upload(writable_server, _jpeg(_striped(6)), description="a mosaic of coloured squares", uploader="ana")
    photo_id = r.json()["photo_id"]
    body = requests.get(f"{writable_server}/api/photos/{photo_id}", timeout=10).json()
    assert body["photo_id"] == photo_id and body["split"] == "upload" and body["uploader"] == "ana"
    assert body["owner"] == "bootstrap"  # the key's person (WITHSENSE_API_TOKEN); "uploader" is a display name
    assert [(d["text"], d["source"], d["author"]) for d in body["descriptions"]] == [("a mosaic of coloured squares", "owner", "ana")]
    assert body["ratings"] == {"expert": {"pairs": 0, "mean_score": None},
                               "crowd": {"pairs": 0, "mean_share": None, "yes": 0, "no": 0},
                               "live_votes": {"yes": 0, "no": 0}}
    assert body["thumbnail_url"] == f"/photos/{photo_id}/thumbnail"


def test_dataset_photo_details_never_show_test_queries(writable_server, writable):
    with writable["engine"].connect() as conn:
        test_photo = conn.execute(text("SELECT id FROM photos WHERE split = 'test' ORDER BY id LIMIT 1")).scalar()
        rated = conn.execute(text(
            """SELECT er.photo_id, count(DISTINCT er.description_id), avg(er.score) FROM expert_ratings er
               GROUP BY er.photo_id ORDER BY er.photo_id LIMIT 1""")).one()
    body = requests.get(f"{writable_server}/api/photos/{test_photo}", timeout=10).json()
    assert all(d["source"] != "test" for d in body["descriptions"])
    body = requests.get(f"{writable_server}/api/photos/{rated[0]}", timeout=10).json()
    assert body["ratings"]["expert"]["pairs"] == rated[1]
    assert body["ratings"]["expert"]["mean_score"] == pytest.approx(float(rated[2]), abs=1e-4)


def test_unknown_photo_is_404(writable_server):
    for path in ("/api/photos/999999", "/photos/999999/thumbnail"):
        r = requests.get(writable_server + path, timeout=10)
        assert r.status_code == 404 and r.json()["status"] == 404


def test_thumbnail_is_small_and_cached(writable_server, writable):
    with writable["engine"].connect() as conn:
        photo_id, sha = conn.execute(text(
            "SELECT id, sha256 FROM photos WHERE split = 'train' AND NOT shows_child ORDER BY id LIMIT 1")).one()
    r = requests.get(f"{writable_server}/photos/{photo_id}/thumbnail", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    original = Image.open(writable["settings"].photo_store_dir / sha[:2] / f"{sha}.jpg")
    thumb = Image.open(io.BytesIO(r.content))
    assert max(thumb.size) == min(256, max(original.size))  # shrunk to 256 px, never enlarged
    cached = writable["settings"].photo_store_dir / "thumbnails" / sha[:2] / f"{sha}.jpg"
    assert cached.read_bytes() == r.content
    from service.ingest import loader

    assert loader.photo_store_orphans(writable["engine"], writable["settings"]) == []


def test_add_description(writable_server, writable):
    engine = writable["engine"]
    with engine.connect() as conn:
        photo_id = conn.execute(text("SELECT id FROM photos WHERE split = 'train' ORDER BY id DESC LIMIT 1")).scalar()
    before = _count(engine, "SELECT count(*) FROM description_embeddings")
    r = requests.post(f"{writable_server}/api/photos/{photo_id}/descriptions",
                      json={"text": "a wet dog shakes off water", "author": "bo"}, headers=AUTH, timeout=60)
    assert r.status_code == 201
    description_id = r.json()["description_id"]
    # one vector per text encoder: MiniLM's and USE multilingual's (descriptions are matched across languages)
    assert _count(engine, "SELECT count(*) FROM description_embeddings") == before + 2
    with engine.connect() as conn:
        row = conn.execute(text("SELECT text, source, author, photo_id FROM descriptions WHERE id = :i"),
                           {"i": description_id}).one()
    assert tuple(row) == ("a wet dog shakes off water", "user", "bo", photo_id)


@pytest.mark.parametrize("photo_id, body, headers, status", [
    (1, {"text": "x"}, {}, 401),
    (1, {"text": "x"}, {"Authorization": "Bearer nope"}, 403),
    (999999, {"text": "x"}, AUTH, 404),
    (1, {"text": ""}, AUTH, 400),
    (1, {"text": "x" * 2001}, AUTH, 400),
    (1, {"author": "nobody"}, AUTH, 400),
])
def test_bad_descriptions(writable_server, photo_id, body, headers, status):
    r = requests.post(f"{writable_server}/api/photos/{photo_id}/descriptions", json=body, headers=headers, timeout=10)
    assert r.status_code == status and r.json()["error"]


def test_rating_shows_in_the_analyst_view(writable_server, writable):
    engine = writable["engine"]
    with engine.connect() as conn:
        photo_id, description_id = conn.execute(text(
            """SELECT d.photo_id, d.id FROM descriptions d WHERE d.source = 'dataset' AND d.photo_id IS NOT NULL
               ORDER BY d.id LIMIT 1""")).one()
    votes = [True, True, False]
    for match in votes:  # three people: one vote per person per pair
        rater = new_user(engine, "rater")
        r = requests.post(f"{writable_server}/api/ratings", headers=rater["auth"], timeout=10,
                          json={"photo_id": photo_id, "description_id": description_id, "match": match})
        assert r.status_code == 201 and r.json()["vote_id"] > 0
    with engine.connect() as conn:
        live = conn.execute(text("SELECT live_yes, live_no FROM analyst_rated_pairs WHERE photo_id = :p AND description_id = :d"),
                            {"p": photo_id, "d": description_id}).one()
    assert tuple(live) == (2, 1)
    body = requests.get(f"{writable_server}/api/photos/{photo_id}", timeout=10).json()
    assert body["ratings"]["live_votes"]["yes"] >= 2


def test_rating_a_free_query(writable_server, writable):
    before = _count(writable["engine"], "SELECT count(*) FROM crowd_votes WHERE query IS NOT NULL")
    r = requests.post(f"{writable_server}/api/ratings", headers=AUTH, timeout=10,
                      json={"photo_id": 1, "query": "a dog in the snow", "match": False})
    assert r.status_code == 201 and r.json()["query"] == "a dog in the snow"
    assert _count(writable["engine"], "SELECT count(*) FROM crowd_votes WHERE query IS NOT NULL") == before + 1


def test_rating_a_test_query_is_404(writable_server, writable):
    with writable["engine"].connect() as conn:
        test_description = conn.execute(text("SELECT id FROM descriptions WHERE source = 'test' LIMIT 1")).scalar()
    r = requests.post(f"{writable_server}/api/ratings", headers=AUTH, timeout=10,
                      json={"photo_id": 1, "description_id": test_description, "match": True})
    assert r.status_code == 404 and r.json()["field"] == "description_id"


@pytest.mark.parametrize("body, headers, status, field", [
    ({"photo_id": 1, "query": "dog", "match": True}, {}, 401, None),
    ({"query": "dog", "match": True}, AUTH, 400, "photo_id"),
    ({"photo_id": 1, "match": True}, AUTH, 400, "description_id"),
    ({"photo_id": 1, "query": "dog", "description_id": 1, "match": True}, AUTH, 400, "description_id"),
    ({"photo_id": 1, "query": "dog"}, AUTH, 400, "match"),
    ({"photo_id": 1, "query": "dog", "match": "yes"}, AUTH, 400, "match"),
    ({"photo_id": 999999, "query": "dog", "match": True}, AUTH, 404, "photo_id"),
    ({"photo_id": 1, "description_id": 999999, "match": True}, AUTH, 404, "description_id"),
])
def test_bad_ratings(writable_server, body, headers, status, field):
    r = requests.post(f"{writable_server}/api/ratings", json=body, headers=headers, timeout=10)
    assert r.status_code == status
    assert r.json().get("field") == field
