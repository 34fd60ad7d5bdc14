"""Image features beyond ``ml.encoders``: the label bridge and a disk cache of image features.

Raw photo features (what the database stores per photo and the joint mapper reads) are the
EfficientNet-Lite vector of ``ml.encoders`` (pooled features + 1000 ImageNet logits), averaged
over the photo and its mirror image when ``flip=True`` (a cheap, label-preserving augmentation:
a caption of a photo also describes its mirror image).

The label bridge turns the ImageNet logits into a vector of the text space without training:
``softmax(logits / T) @ E`` where ``E`` holds the text vectors of the 1000 label phrases.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ml.encoders import encode_in_threads, l2_normalize

N_CLASSES = 1000


def split_features(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pooled, logits) parts of raw EfficientNet-Lite features (the logits are the last 1000 columns)."""
    features = np.asarray(features, dtype=np.float32)
    return features[:, :-N_CLASSES], features[:, -N_CLASSES:]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def label_bridge(features: np.ndarray, label_vectors: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Unit vectors in the text space: class probabilities times the label phrases' text vectors."""
    _, logits = split_features(features)
    return l2_normalize(softmax(logits, temperature) @ np.asarray(label_vectors, dtype=np.float32))


BRIDGE_KINDS = ("imagenet_labels", "identity")


def photo_bridges(features: np.ndarray, label_vectors: np.ndarray, kind: str = "imagenet_labels",
                  temperature: float = 1.0) -> np.ndarray:
    """A photo's text-space vector made without training: the label bridge for EfficientNet
    features, the features themselves for encoders whose image vectors already live in the text
    space (CLIP)."""
    if kind == "identity":
        return l2_normalize(np.asarray(features, dtype=np.float32))
    if kind != "imagenet_labels":
        raise ValueError(f"unknown bridge kind {kind!r}; one of {BRIDGE_KINDS}")
    return label_bridge(features, label_vectors, temperature)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_image_features(
    paths: Sequence[str | os.PathLike],
    encoder,
    cache_dir: str | os.PathLike,
    *,
    flip: bool = True,
    batch: int = 32,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Features of image files, cached per file content in ``cache_dir/<encoder>-<view>.npz``.

    Views ``orig`` and ``mirror`` are cached separately (``flip=True`` averages them). The cache is
    keyed by the file's sha256, so a renamed file reuses its vector and a changed file is encoded
    again. Returns float32 ``(len(paths), encoder.dim)`` in the order of ``paths``. A batch is split
    over ``workers`` threads (``ml.encoders.encode_in_threads``; a ConcatImageEncoder passes its own).
    """
    if hasattr(encoder, "parts"):  # a ConcatImageEncoder: its own flip setting per part, each part cached
        return np.concatenate([cached_image_features(paths, p, cache_dir, flip=f, batch=batch, progress=progress,
                                                     workers=encoder.workers)
                               for p, f in zip(encoder.parts, encoder.part_flips(), strict=True)], axis=1)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    keys = [file_sha256(p) for p in paths]
    views = ["orig", "mirror"] if flip else ["orig"]
    result = np.zeros((len(paths), encoder.dim), np.float32)
    for view in views:
        cache_file = cache_dir / f"{encoder.name}-{view}.npz"
        cache: dict[str, np.ndarray] = {}
        if cache_file.exists():
            with np.load(cache_file) as data:
                cache = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
        todo = sorted({k: i for i, k in enumerate(keys) if k not in cache}.values())
        for start in range(0, len(todo), batch):
            idx = todo[start : start + batch]
            images = []
            for i in idx:
                with Image.open(paths[i]) as im:
                    im = im.convert("RGB")
                    images.append(ImageOps.mirror(im) if view == "mirror" else im)
            vectors = encode_in_threads(encoder.encode, images, workers)
            for i, v in zip(idx, vectors, strict=True):
                cache[keys[i]] = v.astype(np.float32)
            if progress:
                progress(min(start + batch, len(todo)), len(todo))
            if (start // batch) % 8 == 7 or start + batch >= len(todo):
                _save_cache(cache_file, cache)
        if keys:
            result += np.stack([cache[k] for k in keys])
    return result / len(views)


def _save_cache(cache_file: Path, cache: dict[str, np.ndarray]) -> None:
    tmp = cache_file.with_suffix(".tmp.npz")
    np.savez(tmp, keys=np.array(list(cache.keys())), vectors=np.stack(list(cache.values())))
    os.replace(tmp, cache_file)
