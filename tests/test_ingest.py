"""Dataset ingestion into the real database: counts, idempotence, validation, vectors."""
import shutil

import pytest
from sqlalchemy import text

from service.ingest import loader
from service.ingest.dataset import DatasetInvalid, read_dataset
from tests.helpers import FIXTURE_DATASET


def _count(engine, table):
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def test_fixture_load_counts(loaded):
    engine, added = loaded["engine"], loaded["report"].added
    assert added == {"photos": 16, "descriptions": 86, "expert_ratings": 201, "crowd_ratings": 77}
    assert _count(engine, "photos") == 16
    with engine.connect() as conn:
        splits = dict(conn.execute(text("SELECT split, count(*) FROM photos GROUP BY split")).all())
        test_queries = conn.execute(text("SELECT count(*) FROM descriptions WHERE source = 'test'")).scalar()
    assert splits == {"train": 12, "test": 4}
    assert test_queries == 20


def test_second_load_changes_nothing(loaded):
    engine, settings = loaded["engine"], loaded["settings"]
    before = {t: _count(engine, t) for t in ("photos", "descriptions", "expert_ratings", "crowd_ratings")}
    report = loader.load_dataset(engine, settings, read_dataset(FIXTURE_DATASET), progress=False)
    assert not report.changed
    assert "nothing new: the dataset was already loaded" in report.lines()
    assert report.existing == before
    assert {t: _count(engine, t) for t in before} == before


def test_every_photo_and_description_has_vectors(loaded, encoders):
    engine = loaded["engine"]
    with engine.connect() as conn:
        dims = conn.execute(text(
            "SELECT DISTINCT vector_dims(embedding) FROM photo_embeddings WHERE model_id = :m"), {"m": loaded["image"]}
        ).scalars().all()
        n_photo = conn.execute(text("SELECT count(*) FROM photo_embeddings WHERE model_id = :m"), {"m": loaded["image"]}).scalar()
        n_text = conn.execute(text("SELECT count(*) FROM description_embeddings WHERE model_id = :m"), {"m": loaded["text"]}).scalar()
    # Lite0, Lite1 and Lite2 (each 1280 pooled + 1000 logits), Lite0's five crops and its 320 px view (pooled only)
    assert dims == [encoders.image.dim] == [3 * 2280 + 2 * 1280]
    assert n_photo == 16 and n_text == 86




def test_photo_store_is_content_addressed(loaded):
    settings, engine = loaded["settings"], loaded["engine"]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT sha256, storage_key FROM photos")).all()
    import hashlib

    for sha, key in rows:
        path = settings.photo_store_dir / key
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
        assert key.startswith(sha[:2] + "/" + sha)
    assert loader.photo_store_orphans(engine, settings) == []


@pytest.fixture()
def broken_copy(tmp_path):
    target = tmp_path / "dataset"
    shutil.copytree(FIXTURE_DATASET, target)
    return target


def test_missing_image_is_reported_and_nothing_loaded(broken_copy, make_database, settings_for):
    victim = sorted((broken_copy / "train_images").iterdir())[0]
    victim.unlink()
    with pytest.raises(DatasetInvalid) as info:
        read_dataset(broken_copy)
    assert any(p.startswith("train_dataset.csv:") and victim.name in p for p in info.value.problems)


def test_malformed_rows_are_reported_by_file_and_line(broken_copy):
    lines = (broken_copy / "ExpertAnnotations.tsv").read_text().splitlines()
    image, key, *_ = lines[2].split("\t")
    lines[2] = f"{image}\t{key}\t1\t9\t2"
    (broken_copy / "ExpertAnnotations.tsv").write_text("\n".join(lines) + "\n")
    with (broken_copy / "train_dataset.csv").open("a") as f:
        f.write("only,two\n")
    with pytest.raises(DatasetInvalid) as info:
        read_dataset(broken_copy)
    problems = info.value.problems
    assert any(p.startswith("ExpertAnnotations.tsv:3:") for p in problems)
    assert any(p.startswith("train_dataset.csv:69:") and "expected 3 columns" in p for p in problems)


def test_vectors_are_not_computed_twice(loaded, encoders):
    assert loader.embed_photos(loaded["engine"], loaded["settings"], encoders.image, progress=False) == 0
    assert loader.embed_descriptions(loaded["engine"], loaded["settings"], encoders.text, progress=False) == 0
