"""Exact counts on the full Practicum dataset; runs when ../shared/data/photos is present."""
import pytest
from sqlalchemy import text

from service.ingest import loader
from service.ingest.dataset import read_dataset
from service.store.db import make_engine
from tests.helpers import FULL_DATASET, FULL_EXTRA

pytestmark = [
    pytest.mark.full_data,
    pytest.mark.slow,  # loads the full dataset
    pytest.mark.skipif(not FULL_DATASET.is_dir(), reason=f"{FULL_DATASET} is absent"),
]


@pytest.fixture(scope="module")
def full(make_database, settings_for):
    settings = settings_for(make_database())
    engine = make_engine(settings.database_url)
    extra = FULL_EXTRA if FULL_EXTRA.is_dir() else None
    report = loader.load_dataset(engine, settings, read_dataset(FULL_DATASET, extra_dir=extra), progress=False)
    yield engine, report, extra
    engine.dispose()


def test_exact_counts(full):
    engine, report, extra = full
    with engine.connect() as conn:
        one = lambda sql: conn.execute(text(sql)).scalar()  # noqa: E731
        assert one("SELECT count(*) FROM photos") == 1100
        assert one("SELECT count(*) FROM photos WHERE split = 'test'") == 100
        assert one("SELECT count(*) FROM (SELECT 1 FROM expert_ratings GROUP BY photo_id, description_id HAVING count(*) = 3) t") == 5822
        assert one("SELECT count(*) FROM expert_ratings") == 3 * 5822
        assert one("SELECT count(*) FROM descriptions WHERE source = 'test'") == 500
        crowd = one("SELECT count(*) FROM crowd_ratings")
    if extra is not None:
        assert crowd == 47830
    else:
        assert crowd + sum(1 for n in report.notes if "skipped" in n) > 0


def test_expert_score_histogram_matches_source(full):
    engine, _, _ = full
    with engine.connect() as conn:
        hist = dict(conn.execute(text("SELECT score, count(*) FROM expert_ratings GROUP BY score")).all())
    assert hist == {1: 9797, 2: 4997, 3: 1701, 4: 971}  # SOURCE.md, "Checks run"


def test_no_test_query_is_attached_to_a_train_photo(full):
    engine, _, _ = full
    with engine.connect() as conn:
        n = conn.execute(text(
            "SELECT count(*) FROM descriptions d JOIN photos p ON p.id = d.photo_id WHERE d.source = 'test' AND p.split <> 'test'"
        )).scalar()
    assert n == 0
