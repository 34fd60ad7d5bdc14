"""`withsense ingest photo` and `withsense ingest folder`: the upload's code path from the command line."""
import shutil

import pytest
from PIL import Image
from sqlalchemy import text

from service import cli
from tests.helpers import FIXTURE_DATASET


@pytest.fixture()
def run(writable, encoders, monkeypatch):
    """Run the CLI in this process against the writable database, with the session's encoders."""
    settings = writable["settings"]
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("WITHSENSE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setattr("service.runtime.encoders_for", lambda _settings: encoders)
    return lambda *argv: cli.main(list(argv))


def _count(engine, sql="SELECT count(*) FROM photos", **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def _picture(seed: int) -> Image.Image:
    import numpy as np

    rng = np.random.default_rng(1000 + seed)
    return Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((160, 120), Image.NEAREST)


def test_ingest_one_photo_with_metadata(run, writable, tmp_path, capsys):
    path = tmp_path / "cli-harbour.jpg"
    _picture(1).save(path, "JPEG")
    before = _count(writable["engine"])
    assert run("ingest", "photo", str(path), "--description", "boats in a small harbour", "--place", "Bergen",
               "--camera", "Fuji X100", "--taken-at", "2022-07-01T08:00:00Z", "--quiet") == 0
    assert _count(writable["engine"]) == before + 1
    out = capsys.readouterr().out
    assert "added: 1, duplicates: 0, rejected: 0" in out
    with writable["engine"].connect() as conn:
        row = conn.execute(text(
            """SELECT p.split, p.place, p.camera, d.text, d.source FROM photos p JOIN descriptions d ON d.photo_id = p.id
               WHERE p.file_name = 'cli-harbour.jpg'""")).one()
    assert tuple(row) == ("upload", "Bergen", "Fuji X100", "boats in a small harbour", "owner")
    assert run("ingest", "photo", str(path), "--quiet") == 0  # already there: processed, not added
    assert "added: 0, duplicates: 1, rejected: 0" in capsys.readouterr().out
    assert _count(writable["engine"]) == before + 1


def test_ingest_photo_rejects_bad_input(run, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert run("ingest", "photo", str(bad), "--quiet") == 1
    assert "rejected" in capsys.readouterr().out
    assert run("ingest", "photo", str(bad), "--taken-at", "yesterday", "--quiet") == 2


def test_ingest_folder_is_resumable_and_reports(run, writable, tmp_path, capsys):
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i in range(3):
        _picture(10 + i).save(folder / f"p{i}.png", "PNG")
    shutil.copy(FIXTURE_DATASET / "train_images" / "1425069308_488e5fcf9d.jpg", folder / "already.jpg")
    (folder / "notes.txt").write_text("not a photo")
    Image.new("RGB", (8, 8)).save(folder / "anim.gif", "GIF")
    before = _count(writable["engine"])
    assert run("ingest", "folder", str(folder), "--quiet") == 0
    out = capsys.readouterr().out
    assert "added: 3, duplicates: 1, rejected: 2" in out
    assert "notes.txt: the file is not a readable image" in out and "anim.gif: format GIF is not accepted" in out
    assert _count(writable["engine"]) == before + 3
    # Second run: everything known is skipped after hashing; nothing is added.
    assert run("ingest", "folder", str(folder), "--quiet") == 0
    assert "added: 0, duplicates: 4, rejected: 2" in capsys.readouterr().out
    assert _count(writable["engine"]) == before + 3


def test_ingest_folder_of_only_bad_files_fails(run, tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.bin").write_bytes(b"\x00\x01")
    assert run("ingest", "folder", str(tmp_path), "--quiet") == 1
    assert "added: 0, duplicates: 0, rejected: 2" in capsys.readouterr().out
    assert run("ingest", "folder", str(tmp_path / "missing")) == 2


def test_ingested_photo_is_searchable_at_once(run, writable_server, tmp_path):
    import requests

    path = tmp_path / "lantern.png"
    _picture(20).save(path, "PNG")
    assert run("ingest", "photo", str(path), "--description", "a paper lantern glowing at a night market", "--quiet") == 0
    body = requests.post(f"{writable_server}/api/search", json={"query": "a paper lantern glowing at a night market"},
                         timeout=60).json()
    assert body["results"][0]["file_name"] == "lantern.png"
