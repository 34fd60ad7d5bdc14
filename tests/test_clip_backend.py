"""The clip backend end to end with a tiny random CLIP the test builds and saves itself:
ingestion, training, search; and vectors of different encoders never mix."""
import numpy as np
import pytest
from sqlalchemy import text

from service.ingest import loader
from service.ingest.dataset import read_dataset
from service.search.searcher import NoActiveModel, Searcher
from service.store.db import make_engine
from service.store.model_rows import ModelMismatch
from service.training.publish import train_and_publish
from tests.helpers import FIXTURE_DATASET
from tests.tiny_clip import PROJECTION_DIM, build_tiny_clip


@pytest.fixture(scope="module")
def clip_library(make_database, settings_for, tmp_path_factory):
    from ml.encoders import load_encoders

    clip_dir = build_tiny_clip(tmp_path_factory.mktemp("clip"))
    settings = settings_for(make_database(), encoder="clip", clip_path=str(clip_dir))
    encoders = load_encoders("clip", clip_path=str(clip_dir))
    engine = make_engine(settings.database_url)
    loader.load_dataset(engine, settings, read_dataset(FIXTURE_DATASET), progress=False)
    loader.embed_photos(engine, settings, encoders.image, progress=False)
    loader.embed_descriptions(engine, settings, encoders.text, progress=False)
    model = train_and_publish(engine, settings, encoders, run_cv=False, progress=False)
    yield settings, encoders, engine, model
    engine.dispose()


def test_clip_vectors_are_stored_under_their_own_models(clip_library):
    settings, _, engine, model = clip_library
    with engine.connect() as conn:
        rows = dict(conn.execute(text(
            """SELECT m.name, vector_dims(pe.embedding) FROM photo_embeddings pe JOIN models m ON m.id = pe.model_id
               GROUP BY m.name, vector_dims(pe.embedding)""")).all())
        key = conn.execute(text("SELECT encoder_key FROM models WHERE id = :id"), {"id": model["id"]}).scalar()
    assert rows["image:clip:tiny-clip"] == PROJECTION_DIM
    assert key == settings.encoder_key == "clip:tiny-clip"
    assert model["activated"] is True


def test_clip_search_returns_scored_photos(clip_library):
    settings, encoders, engine, model = clip_library
    response = Searcher(engine, settings, encoders.text).search("a dog runs through the snow", log=False)
    assert not response.blocked
    assert response.model_version == model["version"]
    assert len(response.results) == 5
    assert all(0.0 <= r.score <= 1.0 for r in response.results)


def test_other_encoders_never_see_clip_vectors(clip_library):
    """The same database asked with the MiniLM configuration finds no model for it, instead of
    comparing MiniLM query vectors with CLIP photo vectors."""
    settings, _, engine, _ = clip_library
    from ml.encoders import MiniLMTextEncoder

    minilm_settings = settings.with_overrides({"encoder": "minilm", "clip_path": ""})
    with pytest.raises(NoActiveModel):
        Searcher(engine, minilm_settings, MiniLMTextEncoder()).search("a dog", log=False)


def test_a_ranker_of_another_dimension_is_refused(clip_library):
    settings, _, engine, _ = clip_library

    class WrongSizeText:
        name, dim = "wrong", PROJECTION_DIM + 1

        def encode(self, texts):
            return np.zeros((len(texts), self.dim), np.float32)

    with pytest.raises(ModelMismatch, match="dimensions"):
        Searcher(engine, settings, WrongSizeText()).search("a dog", log=False)
