"""Training data as plain numpy arrays, and the leak check that keeps the test photos out of it.

The service builds :class:`TrainingData` from PostgreSQL (``service.training``). The 100 test
photos never enter it: :func:`assert_no_test_leak` raises if one does (by file name, Flickr photo
id or original sha256).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np


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
    pair_live         (r,) int     how many live votes (``POST /api/ratings``) ``pair_crowd`` pools
    pair_dataset_crowd (r,) bool   the dataset's crowd voted on the pair (not only live votes)
    label_vectors     (1000, t) f32  text vectors of the ImageNet label phrases (label bridge)
    extra_texts       (k,) str     captions whose photos are absent (text only)
    extra_vectors     (k, t) f32
    nomatch_texts     (j,) str     queries nothing fits (ml.no_match): calibration negatives only
    nomatch_vectors   (j, t) f32
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
    nomatch_texts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    nomatch_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 384), np.float32))
    bridge_kind: str = "imagenet_labels"  # how ml.features.photo_bridges views a photo in the text space
    pair_live: np.ndarray | None = None           # None: no live votes (zeros)
    pair_dataset_crowd: np.ndarray | None = None  # None: every crowd share is the dataset's

    def __post_init__(self) -> None:
        n, m, r = len(self.photo_keys), len(self.caption_photo), len(self.pair_photo)
        if self.pair_live is None:
            self.pair_live = np.zeros(r, np.int64)
        if self.pair_dataset_crowd is None:
            self.pair_dataset_crowd = ~np.isnan(np.asarray(self.pair_crowd, np.float64))
        assert len(self.pair_live) == r and len(self.pair_dataset_crowd) == r
        assert self.photo_features.shape[0] == n
        assert len(self.caption_texts) == m and self.caption_vectors.shape[0] == m and len(self.caption_blocked) == m
        assert len(self.pair_texts) == r and self.pair_vectors.shape[0] == r
        assert self.pair_expert.shape == (r, 3) and len(self.pair_crowd) == r and len(self.pair_blocked) == r
        if m:
            assert 0 <= self.caption_photo.min() and self.caption_photo.max() < n
        if r:
            assert 0 <= self.pair_photo.min() and self.pair_photo.max() < n

    def subset_photos(self, photo_index: np.ndarray) -> TrainingData:
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
            pair_live=self.pair_live[pm],
            pair_dataset_crowd=self.pair_dataset_crowd[pm],
            label_vectors=self.label_vectors,
            extra_texts=self.extra_texts,
            extra_vectors=self.extra_vectors,
            nomatch_texts=self.nomatch_texts,
            nomatch_vectors=self.nomatch_vectors,
            bridge_kind=self.bridge_kind,
        )

    def all_text_vectors(self) -> np.ndarray:
        """Every text vector there is (captions, rated texts, text-only captions): what the text
        transform (``ml.whitening``) is fitted on."""
        parts = [self.caption_vectors, self.pair_vectors, self.extra_vectors]
        return np.concatenate([p for p in parts if len(p)])

    def with_text_transform(self, transform) -> TrainingData:
        """The data with every text vector (and the label phrases) put through ``transform``."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("caption_vectors", "pair_vectors", "extra_vectors", "nomatch_vectors", "label_vectors"):
            if len(kw[name]):
                kw[name] = transform.transform(kw[name])
        return TrainingData(**kw)

    def with_features(self, photo_features: np.ndarray) -> TrainingData:
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw["photo_features"] = np.asarray(photo_features, np.float32)
        return TrainingData(**kw)


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
    train_flickr_ids: Sequence[str] = (),
) -> None:
    """Raise :class:`LeakError` when a training photo is a test photo.

    Compared by file name, by Flickr photo id (the number before ``_``, which survives renaming and
    re-encoding) and by sha256 of the original file when given. Photos from other collections
    (MS-COCO) are named otherwise; their Flickr photo ids come in ``train_flickr_ids``.
    """
    names = {Path(n).name.split("#")[0] for n in train_names}
    test = {Path(n).name for n in test_names}
    if names & test:
        raise LeakError(f"test photos in training data: {sorted(names & test)[:5]}")
    ids = ({flickr_id(n) for n in names} | set(map(str, train_flickr_ids))) & {flickr_id(n) for n in test}
    if ids:
        raise LeakError(f"test Flickr photo ids in training data: {sorted(ids)[:5]}")
    shas = set(train_sha256) & set(test_sha256)
    if shas:
        raise LeakError(f"test photo sha256 in training data: {sorted(shas)[:3]}")


def cached_text_vectors(texts: Sequence[str], encoder, cache_dir, *, save_every: int = 2048) -> np.ndarray:
    """``encoder.encode(texts)`` with a per-text disk cache (``cache_dir/<encoder>-text.npz``),
    saved every ``save_every`` new texts so an interrupted run keeps what it encoded. Full precision
    only: a query encoder's int8 vectors carry the same name and must not enter the cache."""
    if getattr(encoder, "precision", "fp32") != "fp32":
        raise ValueError(f"{encoder.name} at {encoder.precision} encodes queries only; its vectors are not cached")
    cache_file = Path(cache_dir) / f"{encoder.name}-text.npz"
    cache: dict[str, np.ndarray] = {}
    if cache_file.exists():
        with np.load(cache_file) as data:
            cache = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
    key = lambda t: hashlib.sha1(t.encode("utf-8")).hexdigest()  # noqa: E731
    todo = sorted({t for t in texts if key(t) not in cache})
    for start in range(0, len(todo), save_every):
        chunk = todo[start : start + save_every]
        for t, v in zip(chunk, encoder.encode(chunk), strict=True):
            cache[key(t)] = v
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        # one temporary file per process: two trainings (or research runs) may save the cache at once;
        # the last one's file wins whole, and the other's new texts are encoded again when next asked
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(list(cache)), vectors=np.stack(list(cache.values())))
        os.replace(tmp, cache_file)
    if not len(texts):
        return np.zeros((0, encoder.dim), np.float32)
    return np.stack([cache[key(t)] for t in texts]).astype(np.float32)
