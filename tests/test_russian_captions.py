"""The hand-written Russian captions of training photos (service/training/russian_captions/) and how
the query bridge is fitted on them (service.training.query_bridge.parallel_captions)."""
import csv
import re
import tomllib
from types import SimpleNamespace

import numpy as np
import pytest

from ml.multilingual import QueryBridge
from service.training.evaluation import read_translated_set
from service.training.query_bridge import RUSSIAN_CAPTIONS, parallel_captions, read_captions
from tests.helpers import FULL_DATASET, FULL_EXTRA, REPO_ROOT

ROWS = read_captions(*RUSSIAN_CAPTIONS)
# a second caption of 730 of the same photos, which research measured and the bridge is not fitted on
RESEARCH_ROWS = read_captions(REPO_ROOT / "research" / "ru_train_captions_4.tsv")
# and one caption of each of 556 extra training photos (Flickr8k's and MS-COCO's), not fitted either
EXTRA_ROWS = read_captions(REPO_ROOT / "research" / "ru_extra_captions.tsv")
CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)


def test_the_files_hold_764_russian_captions_of_distinct_captions():
    assert [p.name for p in RUSSIAN_CAPTIONS] == ["ru_train_captions.tsv", "ru_train_captions_2.tsv",
                                                  "ru_train_captions_3.tsv"]
    for path in RUSSIAN_CAPTIONS:
        with open(path, encoding="utf-8") as f:
            assert f.readline().rstrip("\n").split("\t") == ["caption_id", "text_en", "text_ru"]
    assert len(ROWS) == 764 and len({r["caption_id"] for r in ROWS}) == 764
    assert all(v and v == v.strip() for r in ROWS for v in r.values())
    assert all(CYRILLIC.search(r["text_ru"]) and not CYRILLIC.search(r["text_en"]) for r in ROWS)


def test_the_research_file_holds_second_captions_of_the_same_photos():
    assert len(RESEARCH_ROWS) == 730 and not {r["caption_id"] for r in RESEARCH_ROWS} & {r["caption_id"] for r in ROWS}
    assert {r["caption_id"].split("#")[0] for r in RESEARCH_ROWS} <= {r["caption_id"].split("#")[0] for r in ROWS}
    assert all(v and v == v.strip() and "\t" not in v for r in RESEARCH_ROWS for v in r.values())
    assert all(CYRILLIC.search(r["text_ru"]) and not CYRILLIC.search(r["text_en"]) for r in RESEARCH_ROWS)


def test_the_extra_photos_captions_are_of_other_photos():
    assert len(EXTRA_ROWS) == 556 and len({r["caption_id"] for r in EXTRA_ROWS}) == 556
    assert not {r["caption_id"].split("#")[0] for r in EXTRA_ROWS} & {r["caption_id"].split("#")[0] for r in ROWS}
    assert all(CYRILLIC.search(r["text_ru"]) and r["text_ru"] == r["text_ru"].strip() for r in EXTRA_ROWS)


def test_no_caption_is_of_a_test_photo():
    photos = {r["caption_id"].split("#")[0] for r in [*ROWS, *RESEARCH_ROWS, *EXTRA_ROWS]}
    assert not photos & {t.image for t in read_translated_set()}
    if FULL_DATASET.exists():
        with open(FULL_DATASET / "test_images.csv", encoding="utf-8") as f:
            test_photos = {row["image"] for row in csv.DictReader(f)}
        assert len(test_photos) == 100 and not photos & test_photos


def test_every_english_text_is_the_datasets_own_caption():
    # parallel_captions pairs a row with the training data's caption by photo and text.
    if not FULL_EXTRA.exists():
        pytest.skip("the Flickr8k captions (../shared/data/flickr8k_extra) are not beside this checkout")
    caption = {}
    for folder in (FULL_EXTRA, FULL_EXTRA.with_name("captioned_extra")):  # the latter: MS-COCO's, where present
        if (folder / "captions.tsv").exists():
            with open(folder / "captions.tsv", encoding="utf-8", newline="") as f:
                caption |= {f"{r['image']}#{r['caption_no']}": r["caption"]
                            for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}
    coco = any(k.startswith("coco_") for k in caption)
    rows = [*ROWS, *RESEARCH_ROWS, *(r for r in EXTRA_ROWS if coco or not r["caption_id"].startswith("coco_"))]
    assert not [r["caption_id"] for r in rows if caption.get(r["caption_id"]) != r["text_en"]]


def test_parallel_captions_pair_each_russian_caption_with_its_photos_caption(tmp_path):
    path = tmp_path / "ru.tsv"
    path.write_text("caption_id\ttext_en\ttext_ru\n"
                    "a.jpg#0\tA dog runs .\tсобака бежит\n"
                    "b.jpg#1\tA dog runs .\tсобака бежит по траве\n"  # the same words, a photo not held
                    "a.jpg#2\tA cat sleeps .\tкошка спит\n", encoding="utf-8")  # a caption not held
    data = SimpleNamespace(photo_keys=np.array(["a.jpg", "c.jpg"], dtype=object), caption_photo=np.array([1, 0, 0]),
                           caption_texts=np.array(["A dog runs .", "A bird sings .", "A dog runs ."], dtype=object),
                           caption_vectors=np.arange(6, dtype=np.float32).reshape(3, 2))
    russian, vectors = parallel_captions(data, [path])
    assert russian == ["собака бежит"] and vectors.tolist() == [[4.0, 5.0]]
    data.photo_keys = np.array(["x.jpg", "y.jpg"], dtype=object)  # a library without these photos
    russian, vectors = parallel_captions(data, [path])
    assert russian == [] and vectors.shape == (0, 2)


def test_a_weighted_text_counts_as_that_many_copies_of_it():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 8)), rng.normal(size=(30, 4))
    weighted = QueryBridge().fit(x, y, sample_weight=np.r_[np.ones(20), np.full(10, 3.0)])
    repeated = QueryBridge().fit(np.concatenate([x[:20], *[x[20:]] * 3]), np.concatenate([y[:20], *[y[20:]] * 3]))
    assert np.allclose(weighted.coef_, repeated.coef_, atol=1e-5)
    assert not np.allclose(weighted.coef_, QueryBridge().fit(x, y).coef_, atol=1e-3)


def test_ship_as_package_data():
    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service"]
    assert all(any(p.relative_to(REPO_ROOT / "service").match(pattern) for pattern in patterns) for p in RUSSIAN_CAPTIONS)
