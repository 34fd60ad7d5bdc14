"""The Russian evaluation set (service/training/eval_sets/test_queries_ru.tsv): hand-written Russian
versions of the non-blocked test queries, for reporting only (see the folder's README.md)."""
import csv
import re
import tomllib
from collections import Counter

import pytest

from service.policy import is_about_children
from service.training.evaluation import RU_COLUMNS, RU_SET, read_translated_set
from tests.helpers import FULL_DATASET, REPO_ROOT

SET = read_translated_set()
CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
LATIN_WORD = re.compile(r"[a-z]{3,}", re.IGNORECASE)


def test_parses_with_the_documented_header():
    with open(RU_SET, encoding="utf-8") as f:
        assert f.readline().rstrip("\n").split("\t") == RU_COLUMNS
    assert all(len(vars(t)) == 4 for t in SET)


def test_has_at_least_120_distinct_queries_over_many_photos():
    ids = [t.query_id for t in SET]
    assert len(ids) >= 120
    assert not [i for i, n in Counter(ids).items() if n > 1]
    assert len({t.image for t in SET}) >= 70
    assert not [t.query_id for t in SET if t.query_id.split("#", 1)[0] != t.image]


def test_every_field_has_text_and_every_query_is_russian():
    for t in SET:
        assert all(v == v.strip() and v for v in vars(t).values()), t
        assert CYRILLIC.search(t.query_ru), t
        assert not t.query_ru.endswith("."), t  # typed as a search, not a caption
    # The Russian queries are not copies of one another either.
    assert len({t.query_ru for t in SET}) == len(SET)


def test_few_latin_words_in_russian_queries():
    # Brand names and printed text stay as they are ("BMX", "GRAHAM", "Genetic Freak"); anything
    # more would be an untranslated query.
    latin = [t.query_ru for t in SET if LATIN_WORD.search(t.query_ru)]
    assert len(latin) <= 5, latin


def test_no_query_is_blocked_in_either_language():
    # The set holds only queries the content rule lets through in English; a Russian version of
    # such a query must pass too (else the Russian rule over-blocks, or the wording is about a child).
    assert not [t.query_id for t in SET if is_about_children(t.query_en)]
    assert not [(t.query_id, t.query_ru) for t in SET if is_about_children(t.query_ru)]


def test_ships_as_package_data():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["service"]
    rel = RU_SET.relative_to(REPO_ROOT / "service")
    assert any(rel.match(p) for p in patterns), patterns


@pytest.mark.full_data
@pytest.mark.skipif(not (FULL_DATASET / "test_queries.csv").is_file(), reason=f"{FULL_DATASET} is absent")
def test_matches_the_datasets_non_blocked_test_queries():
    with open(FULL_DATASET / "test_queries.csv", encoding="utf-8", newline="") as f:
        rows = {r["query_id"]: r for r in csv.DictReader(f, delimiter="|")}
    assert len(rows) == 500
    for t in SET:
        row = rows.get(t.query_id)
        assert row is not None, t.query_id
        assert (row["image"], row["query_text"]) == (t.image, t.query_en), t.query_id
    non_blocked = [k for k, r in rows.items() if not is_about_children(r["query_text"])]
    assert len(non_blocked) == 331
    assert {t.query_id for t in SET} <= set(non_blocked)
