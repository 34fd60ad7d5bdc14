"""The OpenAPI document as an API user meets it: a client generated from /api/openapi.json by
openapi-python-client, with no warning, searches, uploads and reads a photo's details through it.

The generator runs offline from the served document; the generated package is imported from
tmp_path and called against a real server.
"""
from __future__ import annotations

import importlib
import io
import subprocess
import sys

import numpy as np
import requests
from PIL import Image

from tests.helpers import wait_searchable

TOKEN = "test-token"
PACKAGE = "withsense_client"


def _photo() -> bytes:
    """A picture no other test uploads (its own seed and size), so the upload is new (201)."""
    rng = np.random.default_rng(20260915)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (11, 7, 3), dtype=np.uint8)).resize((77, 121), Image.NEAREST).save(out, "JPEG")
    return out.getvalue()


def _generate(base_url: str, tmp_path) -> subprocess.CompletedProcess:
    document = tmp_path / "openapi.json"
    document.write_bytes(requests.get(f"{base_url}/api/openapi.json", timeout=30).content)
    config = tmp_path / "generator.yml"
    config.write_text("post_hooks: []\n")  # no ruff pass over the generated code: it is only imported
    return subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(document),
         "--output-path", str(tmp_path / PACKAGE), "--meta", "none", "--config", str(config), "--fail-on-warning"],
        capture_output=True, text=True, timeout=300)


def test_a_generated_client_works_without_warnings(writable_server, tmp_path, monkeypatch):
    done = _generate(writable_server, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "warning" not in output.lower(), output[-3000:]

    monkeypatch.syspath_prepend(str(tmp_path))
    client_module = importlib.import_module(PACKAGE)
    api = importlib.import_module(f"{PACKAGE}.api.default")
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    for name in ("post_api_search", "post_api_photos", "get_api_photos_photo_id"):
        importlib.import_module(f"{api.__name__}.{name}")

    client = client_module.Client(base_url=writable_server, raise_on_unexpected_status=True)
    writer = client_module.AuthenticatedClient(base_url=writable_server, token=TOKEN, raise_on_unexpected_status=True)

    # search
    found = api.post_api_search.sync_detailed(client=client, body=models.SearchRequest(query="a dog", limit=3))
    assert found.status_code == 200
    page = found.parsed
    assert isinstance(page, models.SearchResponse) and page.query == "a dog" and not page.blocked
    assert 1 <= len(page.results) <= 3
    first = page.results[0]
    assert isinstance(first, models.SearchResult) and 0 <= first.score <= 1 and first.image_url

    # upload
    description = "a kayak drawn up on a pebble beach"
    upload = models.PhotoUpload(file=types.File(payload=io.BytesIO(_photo()), file_name="kayak.jpg",
                                                mime_type="image/jpeg"),
                                description=description, place="Oban")
    added = api.post_api_photos.sync_detailed(client=writer, body=upload)
    assert added.status_code == 201, added.content
    photo = added.parsed
    assert isinstance(photo, models.PhotoAdded) and photo.duplicate_of is None
    assert isinstance(photo.search, models.SearchState)
    assert photo.search.state in (models.SearchStateState.PENDING, models.SearchStateState.SEARCHABLE)

    # photo details
    wait_searchable(writable_server, photo.photo_id)
    details = api.get_api_photos_photo_id.sync_detailed(client=client, photo_id=photo.photo_id)
    assert details.status_code == 200
    shown = details.parsed
    assert isinstance(shown, models.PhotoDetails)
    assert shown.photo_id == photo.photo_id and shown.file_name == "kayak.jpg" and shown.place == "Oban"
    assert (shown.width, shown.height) == (77, 121) and shown.split == "upload"
    assert [d.text for d in shown.descriptions] == [description]
    assert shown.descriptions[0].source == "owner"
    assert isinstance(shown.ratings, models.RatingsSummary) and shown.ratings.live_votes.yes == 0
    assert shown.search.state == models.SearchStateState.SEARCHABLE
    assert shown.image_url == f"/photos/{photo.photo_id}/image"
