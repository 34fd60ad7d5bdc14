"""Training data as plain numpy arrays, and a builder from the dataset files (for research).

The service builds :class:`TrainingData` from PostgreSQL; :func:`training_data_from_files` builds
the same thing from ``../shared/data/photos`` and ``../shared/data/flickr8k_extra`` and caches the
image and text vectors in ``cache_dir``. The 100 test photos never enter it:
:func:`assert_no_test_leak` raises if one does (by file name, Flickr photo id or original sha256).
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ml.features import cached_image_features, file_sha256, photo_bridges


def is_about_children(text: str) -> bool:
    """The content rule (``service.policy``); a whole-word regex stands in if it is missing."""
    try:
        from service.policy import is_about_children as rule
    except ImportError:  # pragma: no cover - only before service/policy.py exists
        import re

        rule = lambda t: bool(  # noqa: E731
            re.search(r"\b(child(ren)?|kids?|boys?|girls?|bab(y|ies)|toddlers?|infants?|teen(s|ager|agers)?)\b", t, re.I)
        )
    return bool(rule(text))


@dataclass
class TrainingData:
    """Everything training needs, as arrays. ``n`` photos, ``m`` captions, ``r`` rated pairs.

    photo_keys        (n,) str     stable photo id (file name or DB key)
    photo_features    (n, d) f32   raw image features (EfficientNet-Lite pooled + logits)
    caption_photo     (m,) int     index of the photo the caption describes
    caption_texts     (m,) str
    caption_vectors   (m, t) f32   unit text vectors
    caption_blocked   (m,) bool    caption is about children (kept out of training)
    pair_photo        (r,) int     photo index of a rated (photo, text) pair
    pair_texts        (r,) str
    pair_vectors      (r, t) f32
    pair_expert       (r, 3) f32   the three expert scores 1..4, NaN when the pair has none
    pair_crowd        (r,) f32     crowd share of "yes" 0..1, NaN when the pair has none
    pair_blocked      (r,) bool    text is about children
    label_vectors     (1000, t) f32  text vectors of the ImageNet label phrases (label bridge)
    extra_texts       (k,) str     captions whose photos are absent (text only)
    extra_vectors     (k, t) f32
    """

    photo_keys: np.ndarray
    photo_features: np.ndarray
    caption_photo: np.ndarray
    caption_texts: np.ndarray
    caption_vectors: np.ndarray
    caption_blocked: np.ndarray
    pair_photo: np.ndarray
    pair_texts: np.ndarray
    pair_vectors: np.ndarray
    pair_expert: np.ndarray
    pair_crowd: np.ndarray
    pair_blocked: np.ndarray
    label_vectors: np.ndarray
    extra_texts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    extra_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 384), np.float32))
    bridge_kind: str = "imagenet_labels"  # how photo_bridges() views a photo in the text space (ml.features)

    def photo_bridges(self) -> np.ndarray:
        return photo_bridges(self.photo_features, self.label_vectors, self.bridge_kind)

    def __post_init__(self) -> None:
        n, m, r = len(self.photo_keys), len(self.caption_photo), len(self.pair_photo)
        assert self.photo_features.shape[0] == n
        assert len(self.caption_texts) == m and self.caption_vectors.shape[0] == m and len(self.caption_blocked) == m
        assert len(self.pair_texts) == r and self.pair_vectors.shape[0] == r
        assert self.pair_expert.shape == (r, 3) and len(self.pair_crowd) == r and len(self.pair_blocked) == r
        if m:
            assert 0 <= self.caption_photo.min() and self.caption_photo.max() < n
        if r:
            assert 0 <= self.pair_photo.min() and self.pair_photo.max() < n

    def subset_photos(self, photo_index: np.ndarray) -> "TrainingData":
        """The data restricted to some photos (their captions and rated pairs), re-indexed."""
        photo_index = np.asarray(photo_index)
        remap = np.full(len(self.photo_keys), -1)
        remap[photo_index] = np.arange(len(photo_index))
        cm = remap[self.caption_photo] >= 0
        pm = remap[self.pair_photo] >= 0
        return TrainingData(
            photo_keys=self.photo_keys[photo_index],
            photo_features=self.photo_features[photo_index],
            caption_photo=remap[self.caption_photo[cm]],
            caption_texts=self.caption_texts[cm],
            caption_vectors=self.caption_vectors[cm],
            caption_blocked=self.caption_blocked[cm],
            pair_photo=remap[self.pair_photo[pm]],
            pair_texts=self.pair_texts[pm],
            pair_vectors=self.pair_vectors[pm],
            pair_expert=self.pair_expert[pm],
            pair_crowd=self.pair_crowd[pm],
            pair_blocked=self.pair_blocked[pm],
            label_vectors=self.label_vectors,
            extra_texts=self.extra_texts,
            extra_vectors=self.extra_vectors,
            bridge_kind=self.bridge_kind,
        )

    def with_features(self, photo_features: np.ndarray) -> "TrainingData":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw["photo_features"] = np.asarray(photo_features, np.float32)
        return TrainingData(**kw)


@dataclass
class EvalData:
    """A retrieval benchmark: a gallery of photos and queries, each with its one correct photo."""

    photo_keys: np.ndarray
    photo_features: np.ndarray
    query_texts: np.ndarray
    query_vectors: np.ndarray
    query_photo: np.ndarray  # index of the correct photo
    query_blocked: np.ndarray


class LeakError(AssertionError):
    """A held-out test photo (or its captions) got into training data."""


def flickr_id(name: str) -> str:
    return Path(name).name.split("_")[0].split(".")[0]


def assert_no_test_leak(
    train_names: Sequence[str],
    test_names: Sequence[str],
    *,
    train_sha256: Sequence[str] = (),
    test_sha256: Sequence[str] = (),
) -> None:
    """Raise :class:`LeakError` when a training photo is a test photo.

    Compared by file name, by Flickr photo id (the number before ``_``, which survives renaming and
    re-encoding) and by sha256 of the original file when given.
    """
    names = {Path(n).name.split("#")[0] for n in train_names}
    test = {Path(n).name for n in test_names}
    if names & test:
        raise LeakError(f"test photos in training data: {sorted(names & test)[:5]}")
    ids = {flickr_id(n) for n in names} & {flickr_id(n) for n in test}
    if ids:
        raise LeakError(f"test Flickr photo ids in training data: {sorted(ids)[:5]}")
    shas = set(train_sha256) & set(test_sha256)
    if shas:
        raise LeakError(f"test photo sha256 in training data: {sorted(shas)[:3]}")


def _read_tsv(path, header: bool) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[1:] if header else rows


def cached_text_vectors(texts: Sequence[str], encoder, cache_dir) -> np.ndarray:
    """``encoder.encode(texts)`` with a per-text disk cache (``cache_dir/<encoder>-text.npz``)."""
    cache_file = Path(cache_dir) / f"{encoder.name}-text.npz"
    cache: dict[str, np.ndarray] = {}
    if cache_file.exists():
        with np.load(cache_file) as data:
            cache = dict(zip(data["keys"].tolist(), data["vectors"]))
    key = lambda t: hashlib.sha1(t.encode("utf-8")).hexdigest()  # noqa: E731
    todo = sorted({t for t in texts if key(t) not in cache})
    if todo:
        vectors = encoder.encode(todo)
        for t, v in zip(todo, vectors):
            cache[key(t)] = v
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(cache)), vectors=np.stack(list(cache.values())))
        os.replace(tmp, cache_file)
    if not len(texts):
        return np.zeros((0, encoder.dim), np.float32)
    return np.stack([cache[key(t)] for t in texts]).astype(np.float32)


def _test_names_and_sha(photos_dir: Path, extra_dir: Path | None) -> tuple[list[str], list[str]]:
    test_names = sorted(p.name for p in (photos_dir / "test_images").glob("*.jpg"))
    shas = [file_sha256(photos_dir / "test_images" / n) for n in test_names]
    return test_names, shas


def training_data_from_files(
    photos_dir: str | os.PathLike,
    extra_dir: str | os.PathLike | None,
    encoders,
    cache_dir: str | os.PathLike,
    *,
    flip: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingData:
    """TrainingData from the dataset files: train photos (+ the extra Flickr8k photos when
    ``extra_dir`` is given), their captions, the expert and crowd ratings, label vectors.

    Captions come from ``extra_dir/captions.tsv`` when present (5 per photo), else from
    ``train_dataset.csv``. Rated pairs: the union of expert and crowd rows per (image, query_id).
    """
    from ml.encoders import imagenet_label_texts

    photos_dir = Path(photos_dir)
    extra_dir = Path(extra_dir) if extra_dir else None
    train_paths = sorted((photos_dir / "train_images").glob("*.jpg"))
    extra_paths = sorted((extra_dir / "images").glob("*.jpg")) if extra_dir and (extra_dir / "images").is_dir() else []
    paths = train_paths + extra_paths
    keys = np.array([p.name for p in paths], dtype=object)
    index = {k: i for i, k in enumerate(keys)}

    # Leak check before anything is computed from the photos.
    test_names, test_sha = _test_names_and_sha(photos_dir, extra_dir)
    orig_sha = []
    if extra_dir and (extra_dir / "images_manifest.tsv").exists():
        manifest = {r[0]: r[6] for r in _read_tsv(extra_dir / "images_manifest.tsv", header=True)}
        orig_sha = [manifest[p.name] for p in extra_paths if p.name in manifest]
    assert_no_test_leak(list(keys), test_names, train_sha256=orig_sha, test_sha256=test_sha)

    features = cached_image_features(paths, encoders.image, cache_dir, flip=flip, progress=progress)

    # Captions: photo captions (for photos we have) and text-only captions (photos absent).
    query_text: dict[str, str] = {}
    cap_rows: list[tuple[int, str]] = []
    extra_texts: list[str] = []
    if extra_dir and (extra_dir / "captions.tsv").exists():
        test_set = set(test_names)
        for image, no, text in _read_tsv(extra_dir / "captions.tsv", header=True):
            assert image not in test_set, "a test photo's caption is in captions.tsv"
            query_text[f"{image}#{no}"] = text
            if image in index:
                cap_rows.append((index[image], text))
            else:
                extra_texts.append(text)
    with open(photos_dir / "train_dataset.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        query_text.setdefault(row["query_id"], row["query_text"])
    if not cap_rows:  # no flickr8k_extra: the Practicum captions of the train photos
        seen = set()
        for row in rows:
            qimg = row["query_id"].split("#")[0]
            if qimg in index and row["query_id"] not in seen:
                seen.add(row["query_id"])
                cap_rows.append((index[qimg], row["query_text"]))
    assert_no_test_leak([keys[i] for i, _ in cap_rows], test_names)

    # Rated pairs: expert and crowd rows joined on (image, query_id).
    pairs: dict[tuple[str, str], dict] = {}
    for image, qid, e1, e2, e3 in _read_tsv(photos_dir / "ExpertAnnotations.tsv", header=False):
        pairs.setdefault((image, qid), {})["expert"] = [float(e1), float(e2), float(e3)]
    for image, qid, share, _yes, _no in _read_tsv(photos_dir / "CrowdAnnotations.tsv", header=False):
        pairs.setdefault((image, qid), {})["crowd"] = float(share)
    pair_keys = sorted(k for k in pairs if k[0] in index and k[1] in query_text)
    assert_no_test_leak([k[0] for k in pair_keys] + [k[1] for k in pair_keys], test_names)

    cap_texts = [t for _, t in cap_rows]
    pair_texts = [query_text[q] for _, q in pair_keys]
    all_vectors = cached_text_vectors(cap_texts + pair_texts + extra_texts, encoders.text, cache_dir)
    m, r = len(cap_texts), len(pair_texts)
    labels = imagenet_label_texts()
    blocked = {t: is_about_children(t) for t in set(cap_texts) | set(pair_texts)}
    return TrainingData(
        photo_keys=keys,
        photo_features=features,
        caption_photo=np.array([i for i, _ in cap_rows], dtype=np.int64),
        caption_texts=np.array(cap_texts, dtype=object),
        caption_vectors=all_vectors[:m],
        caption_blocked=np.array([blocked[t] for t in cap_texts], dtype=bool),
        pair_photo=np.array([index[k[0]] for k in pair_keys], dtype=np.int64),
        pair_texts=np.array(pair_texts, dtype=object),
        pair_vectors=all_vectors[m : m + r],
        pair_expert=np.array(
            [pairs[k].get("expert", [np.nan] * 3) for k in pair_keys], dtype=np.float32
        ).reshape(-1, 3),
        pair_crowd=np.array([pairs[k].get("crowd", np.nan) for k in pair_keys], dtype=np.float32),
        pair_blocked=np.array([blocked[t] for t in pair_texts], dtype=bool),
        label_vectors=cached_text_vectors(labels, encoders.text, cache_dir),
        extra_texts=np.array(extra_texts, dtype=object),
        extra_vectors=all_vectors[m + r :],
    )


def benchmark_from_files(photos_dir, encoders, cache_dir, *, flip: bool = True) -> EvalData:
    """The benchmark: 100 test photos and their 500 queries. For the final report only."""
    photos_dir = Path(photos_dir)
    names = sorted(p.name for p in (photos_dir / "test_images").glob("*.jpg"))
    index = {n: i for i, n in enumerate(names)}
    features = cached_image_features([photos_dir / "test_images" / n for n in names], encoders.image, cache_dir, flip=flip)
    with open(photos_dir / "test_queries.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="|"))
    texts = [r["query_text"] for r in rows]
    return EvalData(
        photo_keys=np.array(names, dtype=object),
        photo_features=features,
        query_texts=np.array(texts, dtype=object),
        query_vectors=cached_text_vectors(texts, encoders.text, cache_dir),
        query_photo=np.array([index[r["image"]] for r in rows], dtype=np.int64),
        query_blocked=np.array([is_about_children(t) for t in texts], dtype=bool),
    )
