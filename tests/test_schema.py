"""Bad rows cannot enter: checks, foreign keys and unique keys are the database's."""
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from service.store.db import make_engine

SHA = "a" * 64
PHOTO = "INSERT INTO photos (file_name, sha256, bytes, width, height, storage_key, split) VALUES "


@pytest.fixture(scope="module")
def engine(make_database):
    engine = make_engine(make_database())
    with engine.begin() as conn:
        conn.execute(text(PHOTO + f"('a.jpg', '{SHA}', 10, 5, 5, 'aa/a.jpg', 'train')"))
        conn.execute(text("INSERT INTO descriptions (text, source) VALUES ('a dog', 'user')"))
    yield engine
    engine.dispose()


@pytest.mark.parametrize("statement", [
    PHOTO + f"('b.jpg', '{SHA}', 10, 5, 5, 'k', 'train')",                 # same sha256 twice
    PHOTO + f"('b.jpg', '{'b' * 64}', 10, 5, 5, 'k', 'holiday')",          # unknown split
    PHOTO + "('b.jpg', 'not-a-hash', 10, 5, 5, 'k', 'train')",             # sha256 not hex
    PHOTO + f"('b.jpg', '{'c' * 64}', 0, 5, 5, 'k', 'train')",             # empty file
    "INSERT INTO descriptions (text, source) VALUES ('   ', 'user')",        # blank text
    "INSERT INTO descriptions (text, source) VALUES ('x', 'robot')",         # unknown source
    "INSERT INTO descriptions (text, source, photo_id) VALUES ('x', 'user', 999999)",  # no such photo
    "INSERT INTO expert_ratings SELECT p.id, d.id, 1, 5 FROM photos p, descriptions d",  # score > 4
    "INSERT INTO expert_ratings SELECT p.id, d.id, 4, 2 FROM photos p, descriptions d",  # expert 4 of 3
    "INSERT INTO crowd_ratings SELECT p.id, d.id, 1.5, 1, 0 FROM photos p, descriptions d",  # share > 1
    "INSERT INTO crowd_ratings SELECT p.id, d.id, 0.5, -1, 0 FROM photos p, descriptions d",  # negative count
    "INSERT INTO crowd_votes (photo_id, match) SELECT id, true FROM photos",  # vote about nothing
    "INSERT INTO models (kind, name, version, encoder_key, dims) VALUES ('toaster', 'x', '1', 'k', 3)",
])
def test_bad_rows_are_refused(engine, statement):
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(text(statement))


def test_one_active_ranker_per_encoder(engine):
    insert = "INSERT INTO models (kind, name, version, encoder_key, dims, active) VALUES ('ranker', 'r', :v, 'k', 3, true)"
    with engine.begin() as conn:
        conn.execute(text(insert), {"v": "1"})
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(text(insert), {"v": "2"})
