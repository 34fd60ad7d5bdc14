"""A library keeps the image precision it was built with when the default changes (int8 for new
libraries on a CPU with VNNI, fp32 on others), and an explicit WITHSENSE_IMAGE_PRECISION that
differs from it is refused with what to do.

The old library here is an fp32 one built as before the default changed (one image network, so it
loads quickly: the rule does not depend on which networks run)."""
from __future__ import annotations

import json

import pytest
from PIL import Image
from sqlalchemy import text

from service import cli
from service.config import load_settings
from service.store.model_rows import ModelMismatch
from tests.helpers import FIXTURE_DATASET

IMAGE_MODEL = "efficientnet-lite0"


def _settings(library: dict, **overrides):
    """The settings an operator's environment gives, WITHSENSE_IMAGE_PRECISION left empty unless given."""
    return load_settings(database_url=library["url"], data_dir=library["data_dir"], onnx_dir=library["onnx_dir"],
                         image_model=IMAGE_MODEL, extra_dataset="", captioned_extra="", api_token="test-token",
                         **overrides)


def _rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


@pytest.fixture(scope="module")
def fp32_library(make_database, onnx_dir, encoders, tmp_path_factory):
    """An fp32 library's photos and image vectors (its ranker comes in the test)."""
    from ml.encoders import EncoderPair, load_encoders
    from service.ingest import loader
    from service.ingest.dataset import read_dataset
    from service.store.db import make_engine

    library = {"url": make_database(), "data_dir": tmp_path_factory.mktemp("fp32-data"), "onnx_dir": str(onnx_dir)}
    settings = _settings(library, image_precision="fp32")
    image = load_encoders("minilm", image_model=IMAGE_MODEL, runtime="onnx", onnx_dir=onnx_dir,
                          image_precision="fp32").image
    library["encoders"] = EncoderPair(text=encoders.text, image=image, multilingual=encoders.multilingual)
    library["engine"] = engine = make_engine(settings.database_url)
    loader.load_dataset(engine, settings, read_dataset(FIXTURE_DATASET), progress=False)
    loader.embed_photos(engine, settings, image, progress=False)
    loader.embed_descriptions(engine, settings, encoders.text, progress=False)
    loader.embed_descriptions(engine, settings, encoders.multilingual, progress=False)
    yield library
    engine.dispose()


def test_a_new_library_takes_the_cpus_precision_and_the_default_fixtures_run_it(make_database, loaded, tmp_path):
    from ml.onnx_encoders import cpu_has_vnni
    from service.store.db import make_engine
    from service.store.library_precision import library_settings

    new = "int8" if cpu_has_vnni() else "fp32"  # int8 only pays where VNNI runs it (service/config.py)
    engine = make_engine(make_database())
    try:
        fresh = load_settings(database_url=engine.url.render_as_string(hide_password=False), data_dir=tmp_path)
        assert fresh.image_precision == ""
        assert library_settings(engine, fresh).image_precision == new
        for asked in ("fp32", "int8"):
            assert library_settings(engine, fresh.with_overrides({"image_precision": asked})).image_precision == asked
    finally:
        engine.dispose()
    # The session's libraries are built under the default: their ranker reads that precision's vectors.
    unset = loaded["settings"].with_overrides({"image_precision": ""})
    assert library_settings(loaded["engine"], unset).image_precision == new
    assert loaded["settings"].encoder_key.endswith("+int8") == (new == "int8")


def test_an_fp32_library_keeps_fp32_and_refuses_an_explicit_int8(fp32_library, monkeypatch, capsys):
    from service.photos import embedding_queue
    from service.store.db import session_scope
    from service.store.library_precision import library_settings
    from service.training.publish import train_and_publish

    engine, encoders = fp32_library["engine"], fp32_library["encoders"]
    unset = _settings(fp32_library)

    # Before any ranker, its stored image vectors tell.
    assert library_settings(engine, unset).image_precision == "fp32"
    with pytest.raises(ModelMismatch, match=r"built with fp32 image networks \(its stored image vectors\)"):
        library_settings(engine, _settings(fp32_library, image_precision="int8"))

    model = train_and_publish(engine, library_settings(engine, unset), encoders, run_cv=False, progress=False)
    settings = library_settings(engine, unset)
    assert settings.image_precision == "fp32" and not settings.encoder_key.endswith("+int8")
    assert library_settings(engine, _settings(fp32_library, image_precision="fp32")) == settings
    with pytest.raises(ModelMismatch) as refused:
        library_settings(engine, _settings(fp32_library, image_precision="int8"))
    assert "(its active ranker)" in str(refused.value)
    assert "Unset WITHSENSE_IMAGE_PRECISION" in str(refused.value) and "fresh database" in str(refused.value)

    # The command line, as an operator runs it after the upgrade: no precision set.
    monkeypatch.setenv("DATABASE_URL", fp32_library["url"])
    monkeypatch.setenv("WITHSENSE_DATA_DIR", str(fp32_library["data_dir"]))
    monkeypatch.setenv("WITHSENSE_ONNX_DIR", fp32_library["onnx_dir"])
    monkeypatch.setenv("WITHSENSE_IMAGE_MODEL", IMAGE_MODEL)
    monkeypatch.delenv("WITHSENSE_IMAGE_PRECISION", raising=False)
    asked = []  # the precision each command loaded its networks for (this test's fp32 pair, loaded once)
    monkeypatch.setattr("service.runtime.encoders_for", lambda s: asked.append(s.image_precision) or encoders)
    assert cli.main(["search", "a dog runs on the grass", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["model_version"] == model["version"] and answer["results"]
    upload = fp32_library["data_dir"] / "upload.jpg"
    Image.open(next((FIXTURE_DATASET / "test_images").glob("*.jpg"))).rotate(90, expand=True).save(upload)
    assert cli.main(["ingest", "photo", str(upload), "--quiet"]) == 0
    photo_id = int(capsys.readouterr().out.split("as photo ")[1].split()[0])
    with session_scope(engine) as session:
        state = embedding_queue.search_state(session=session, photo_id=photo_id, encoder_key=settings.encoder_key)
    assert state.state == "searchable"  # under the fp32 ranker: the upload was not embedded apart
    assert asked == ["fp32", "fp32"]

    # Asked for int8 explicitly: refused before anything is written, exit code 2, what to do on stderr.
    monkeypatch.setenv("WITHSENSE_IMAGE_PRECISION", "int8")
    for argv in (["search", "a dog"], ["ingest", "photo", str(upload)], ["worker", "--once"], ["train", "--no-cv"]):
        assert cli.main(argv) == 2
        assert "Unset WITHSENSE_IMAGE_PRECISION" in capsys.readouterr().err
    assert asked == ["fp32", "fp32"]
    assert _rows(engine, "SELECT id FROM models WHERE encoder_key LIKE '%+int8'") == []


def test_the_web_app_of_an_fp32_library_serves_its_fp32_ranker(fp32_library, monkeypatch):
    from service import create_app
    from service.runtime import shut_down
    from service.store.library_precision import library_settings
    from service.training.publish import train_and_publish

    engine = fp32_library["engine"]
    if not _rows(engine, "SELECT id FROM models WHERE kind = 'ranker' AND active"):  # run alone
        train_and_publish(engine, library_settings(engine, _settings(fp32_library)), fp32_library["encoders"],
                          run_cv=False, progress=False)
    monkeypatch.delenv("WITHSENSE_IMAGE_PRECISION", raising=False)
    app = create_app({"database_url": fp32_library["url"], "data_dir": fp32_library["data_dir"],
                      "onnx_dir": fp32_library["onnx_dir"], "image_model": IMAGE_MODEL, "extra_dataset": "",
                      "captioned_extra": "", "key_failure_limit": 0})
    app.extensions["withsense.encoders"] = fp32_library["encoders"]
    try:
        assert app.config["WITHSENSE"].image_precision == "fp32"
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        reply = client.post("/api/search", json={"query": "a dog runs on the grass"})
        assert reply.status_code == 200 and reply.get_json()["results"]
    finally:
        shut_down(app)  # its search-log lines written now, while the database is up
        app.extensions["withsense.engine"].dispose()
