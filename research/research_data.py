"""Research only: ml.data.TrainingData built straight from the shared files (no database), with
image features assembled from the view caches written by ``extract_views.py``.

The product builds the same arrays from PostgreSQL (``service.training.publish.training_data``);
this copy exists so that feature and model choices can be measured in minutes by grouped CV.

    from scripts.experiments.research_data import load
    data, test = load("/tmp/ws12", "lite0,lite0/crop5,lite0/s320,lite2")
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.data import TrainingData, assert_no_test_leak, cached_text_vectors
from ml.encoders import MiniLMTextEncoder, imagenet_label_texts
from ml.features import file_sha256
from service.ingest.dataset import read_dataset
from service.policy import is_about_children

SHARED = Path("/work/shared/data")
NAMES = {"lite0": "efficientnet-lite0", "lite1": "efficientnet-lite1", "lite2": "efficientnet-lite2"}


@dataclass
class TestSet:
    photo_keys: np.ndarray
    photo_features: np.ndarray
    query_texts: np.ndarray
    query_vectors: np.ndarray
    query_photo: np.ndarray
    query_blocked: np.ndarray


def _views(work: Path, spec: str, keys: list[str]) -> np.ndarray:
    """Features for a spec like "lite0,lite0/crop5,lite0/s320,lite2": a bare model is its flip average
    (orig + mirror); a view keeps the pooled part only (its logits dropped)."""
    cols = []
    for part in spec.split(","):
        model, _, view = part.partition("/")
        def load(v):
            with np.load(work / "views" / f"{NAMES[model]}-{v}.npz") as f:
                index = {k: i for i, k in enumerate(f["keys"].tolist())}
                return f["vectors"][[index[k] for k in keys]]
        cols.append((load("orig") + load("mirror")) / 2 if not view else load(view)[:, :-1000])
    return np.concatenate(cols, axis=1).astype(np.float32)


def _captions(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]:
            if len(row) == 3:
                out.setdefault(row[0], []).append(row[2])
    return out


def load(work: str | Path, spec: str, *, coco: bool = True, extra_text: bool = True) -> tuple[TrainingData, TestSet, np.ndarray]:
    """(training data, test set, photo source per training photo: 'flickr', 'flickr_extra' or 'coco')."""
    work = Path(work)
    enc = MiniLMTextEncoder()
    cache = work / "cache"
    ds = read_dataset(SHARED / "photos", extra_dir=SHARED / "flickr8k_extra")
    train_names = sorted(n for n, (s, _) in ds.photos.items() if s == "train")
    test_names = sorted(n for n, (s, _) in ds.photos.items() if s == "test")
    f8 = _captions(SHARED / "flickr8k_extra/captions.tsv")
    extra_paths = sorted((SHARED / "flickr8k_extra/images").glob("*.jpg"))
    coco_paths = sorted((SHARED / "captioned_extra/images").glob("*.jpg")) if coco else []
    cc = _captions(SHARED / "captioned_extra/captions.tsv")
    paths = [ds.photos[n][1] for n in train_names] + extra_paths + coco_paths
    names = train_names + [p.name for p in extra_paths] + [p.name for p in coco_paths]
    source = np.array(["flickr"] * len(train_names) + ["flickr_extra"] * len(extra_paths) + ["coco"] * len(coco_paths))
    index = {n: i for i, n in enumerate(names)}
    caps: list[tuple[int, str]] = []
    seen = set()
    for c in ds.captions.values():
        if c.source == "dataset" and c.photo_file in index and (c.photo_file, c.text) not in seen:
            caps.append((index[c.photo_file], c.text))
            seen.add((c.photo_file, c.text))
    for n in names:
        for t in (cc if n.startswith("coco_") else f8).get(n, []):
            if (n, t) not in seen:
                caps.append((index[n], t))
                seen.add((n, t))
    extra_texts = [t for n, ts in f8.items() if n not in index and n not in set(test_names) for t in ts] if extra_text else []
    pairs: dict[tuple[str, str], list] = {}
    for r in ds.experts:
        pairs.setdefault((r.photo_file, r.key), [list(r.scores), None])[0] = list(r.scores)
    for r in ds.crowd:
        pairs.setdefault((r.photo_file, r.key), [[None] * 3, None])[1] = r.share
    pair_list = [(index[p], ds.captions[k].text, v[0], v[1]) for (p, k), v in pairs.items()]
    manifest = {}
    with (SHARED / "captioned_extra/manifest.tsv").open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            manifest[r["image"]] = r
    coco_ids = [manifest[p.name]["flickr_url"].rsplit("/", 1)[-1].split("_")[0] + "_coco.jpg" for p in coco_paths]
    assert_no_test_leak(names[: len(names) - len(coco_paths)] + coco_ids, test_names,
                        train_sha256=[manifest[p.name]["orig_sha256"] for p in coco_paths],
                        test_sha256=[file_sha256(ds.photos[n][1]) for n in test_names])
    keys = [file_sha256(p) for p in paths]
    texts = [t for _, t in caps]
    data = TrainingData(
        photo_keys=np.array(names, dtype=object),
        photo_features=_views(work, spec, keys),
        caption_photo=np.array([i for i, _ in caps]),
        caption_texts=np.array(texts, dtype=object),
        caption_vectors=cached_text_vectors(texts, enc, cache),
        caption_blocked=np.array([is_about_children(t) for t in texts]),
        pair_photo=np.array([p[0] for p in pair_list]),
        pair_texts=np.array([p[1] for p in pair_list], dtype=object),
        pair_vectors=cached_text_vectors([p[1] for p in pair_list], enc, cache),
        pair_expert=np.array([[np.nan if s is None else s for s in p[2]] for p in pair_list], np.float32),
        pair_crowd=np.array([np.nan if p[3] is None else p[3] for p in pair_list], np.float32),
        pair_blocked=np.array([is_about_children(p[1]) for p in pair_list]),
        label_vectors=cached_text_vectors(imagenet_label_texts(), enc, cache),
        extra_texts=np.array(extra_texts, dtype=object),
        extra_vectors=cached_text_vectors(extra_texts, enc, cache) if extra_texts else np.zeros((0, 384), np.float32),
    )
    tq = [c for c in ds.captions.values() if c.source == "test"]
    tindex = {n: i for i, n in enumerate(test_names)}
    test = TestSet(
        photo_keys=np.array(test_names, dtype=object),
        photo_features=_views(work, spec, [file_sha256(ds.photos[n][1]) for n in test_names]),
        query_texts=np.array([c.text for c in tq], dtype=object),
        query_vectors=cached_text_vectors([c.text for c in tq], enc, cache),
        query_photo=np.array([tindex[c.photo_file] for c in tq]),
        query_blocked=np.array([is_about_children(c.text) for c in tq]),
    )
    return data, test, source
