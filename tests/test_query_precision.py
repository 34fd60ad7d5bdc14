"""Search queries through MiniLM's int8 copy (WITHSENSE_QUERY_PRECISION): close to fp32 on real
captions, the same text encoder to the database (no row of its own, nothing stored), and a search
through it finds what the fp32 one finds."""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from ml.data import cached_text_vectors
from ml.encoders import load_encoders
from ml.onnx_encoders import TEXT_NETWORK, OnnxMiniLMTextEncoder, ensure_exported, model_path
from service.config import load_settings
from service.search.searcher import Searcher
from service.store.model_rows import encoder_model_ids
from tests.helpers import FIXTURE_DATASET, app_for

QUERIES = ["a dog runs through the snow", "two people on a beach", "a man riding a bike", "a woman walks along a city street"]


def _captions() -> list[str]:
    import csv

    with open(FIXTURE_DATASET / "train_dataset.csv", newline="") as f:
        return list(dict.fromkeys(row["query_text"] for row in csv.DictReader(f)))


@pytest.fixture(scope="module")
def int8(onnx_dir):
    return OnnxMiniLMTextEncoder(onnx_dir, precision="int8").load()  # quantized once per onnx dir


def test_the_int8_copy_is_made_beside_the_export_and_close_to_fp32(onnx_dir, int8):
    (path,) = ensure_exported(onnx_dir, [TEXT_NETWORK], "int8")
    assert path == model_path(onnx_dir, TEXT_NETWORK, "int8") and path.name.endswith("-opset17-int8.onnx")
    assert path.stat().st_size < model_path(onnx_dir, TEXT_NETWORK).stat().st_size / 3
    captions = _captions()
    assert len(captions) >= 20
    a, b = OnnxMiniLMTextEncoder(onnx_dir).encode(captions), int8.encode(captions)
    assert b.shape == a.shape == (len(captions), 384)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cosine = (a * b).sum(1)
    assert cosine.min() >= 0.95 and cosine.mean() >= 0.98, cosine
    assert not np.allclose(a, b, atol=1e-3)  # the quantized network indeed
    assert int8.name == TEXT_NETWORK  # a query encoder for MiniLM's stored vectors, by the same name


def test_the_int8_copy_stores_nothing(loaded, int8, tmp_path):
    with pytest.raises(ValueError, match="search queries only"):
        encoder_model_ids(loaded["engine"], loaded["settings"], text_encoder=int8)
    with pytest.raises(ValueError, match="queries only"):
        cached_text_vectors(["a dog"], int8, tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_search_through_int8_queries_uses_the_stored_fp32_vectors(loaded, onnx_dir):
    settings = loaded["settings"]
    with loaded["engine"].connect() as conn:
        rows_before = conn.execute(text("SELECT id, name FROM models ORDER BY id")).all()
    served = load_encoders("minilm", image_model=settings.image_model, runtime="onnx", onnx_dir=onnx_dir,
                           image_precision=settings.image_precision, query_precision="int8")
    assert (served.text.precision, served.query.precision, served.query_text) == ("fp32", "int8", served.query)
    fp32 = Searcher(loaded["engine"], settings, served.text, multilingual=served.multilingual)
    int8 = Searcher(loaded["engine"], settings, served.query_text, multilingual=served.multilingual)
    try:
        # The same text encoder row: descriptions' stored fp32 vectors are what int8 queries meet.
        assert int8.active_state().text_model_id == fp32.active_state().text_model_id == loaded["text"]
        for query in QUERIES:
            a, b = fp32.search(query, limit=10, log=False), int8.search(query, limit=10, log=False)
            assert len(b.results) == len(a.results) == 10
            assert b.text_encoder == a.text_encoder == TEXT_NETWORK
            assert b.results[0].photo_id in {r.photo_id for r in a.results[:3]}, query
            assert len({r.photo_id for r in a.results} & {r.photo_id for r in b.results}) >= 7, query
    finally:
        fp32.close()
        int8.close()
    with loaded["engine"].connect() as conn:
        assert conn.execute(text("SELECT id, name FROM models ORDER BY id")).all() == rows_before


def test_the_app_searches_at_the_query_precision_and_stores_at_fp32(loaded):
    from service.runtime import get_encoders, get_searcher, shut_down

    for precision in ("int8", "fp32"):
        app = app_for({"settings": loaded["settings"]}, None, query_precision=precision)
        app.extensions.pop("withsense.encoders")  # the app's own encoders, as a server worker builds them
        with app.app_context():
            assert get_searcher(app).text_encoder.precision == precision
            assert get_encoders(app).text.precision == "fp32"  # descriptions added here
        try:
            response = app.test_client().post("/api/search", json={"query": QUERIES[0]})
            assert response.status_code == 200 and len(response.get_json()["results"]) > 0
        finally:
            shut_down(app)  # its search log line written while the database is there


def test_only_minilm_on_onnx_runtime_has_a_query_precision():
    assert load_settings().query_precision == "int8"
    assert load_settings(encoder_runtime="torch").served_query_precision == "fp32"
    assert load_settings(query_precision="fp32").served_query_precision == "fp32"
    assert load_encoders("minilm", runtime="torch", query_precision="int8").query is None
