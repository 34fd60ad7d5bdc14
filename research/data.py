"""The training data research measures on: the product's own (``withsense train`` reads the same
arrays), from a database built by ``make demo``, with three knobs the product does not have.

* ``image_model``: other image features, in the syntax of ``WITHSENSE_IMAGE_MODEL``
  (``efficientnet-lite0+efficientnet-lite0/crop5+efficientnet-lite0@320+efficientnet-lite2``). The
  database stores the features of its own image model only, so the other ones are computed from
  the photo files by the product's encoders (ONNX Runtime by default) and kept in the product's
  feature cache (``<WITHSENSE_DATA_DIR>/cache/<part>-<view>.npz``, ``ml.features``), one file per
  network and view: a combination of parts already measured costs no encoding.
* ``coco=False``: without the captioned_extra (MS-COCO) photos.
* ``extra_text=True``: with the Flickr8k captions of photos absent here as text-only vectors
  (``TrainingData.extra_texts``, read by the whitening's PCA). The product does not read them
  (docs/model.md, "Tried and not kept").

The database, the dataset and the extra folders come from the settings (``WITHSENSE_DATA_DIR``,
``DATABASE_URL``, ``WITHSENSE_DATASET``, ``WITHSENSE_EXTRA_DATASET``, ``WITHSENSE_CAPTIONED_EXTRA``).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ml.data import TrainingData, cached_text_vectors
from ml.encoders import load_encoders
from ml.features import cached_image_features
from ml.train import WHITENING_POWER
from ml.whitening import PartialWhitening
from service.config import Settings, load_settings
from service.ingest.dataset import read_dataset
from service.runtime import encoders_for
from service.store.db import make_engine, resolve_url
from service.store.library_precision import resolved_settings
from service.training.extra_folders import read_extra_folder
from service.training.query_bridge import RUSSIAN_CAPTIONS, read_captions
from service.training.training_data import training_data

# Russian captions of training photos written by hand (never of the test photos), which the product's
# bridge is also fitted on (service.training.query_bridge.RUSSIAN_CAPTIONS): the first 100, then 240
# more (docs/model.md, "The order of a bridged query"), then 424 more ("Russian captions in the bridge's fit")
RU_CAPTIONS, RU_CAPTIONS_2, RU_CAPTIONS_3 = RUSSIAN_CAPTIONS
# A second caption of 730 of the same photos, written by hand in the twelfth session: not served, the
# bridge did not gain from it in grouped CV (docs/model.md, "More Russian captions")
RU_CAPTIONS_4 = Path(__file__).with_name("ru_train_captions_4.tsv")


def russian_captions(*files: Path) -> list[dict]:
    """The rows of the hand-written Russian caption files, ``RU_CAPTIONS`` alone by default."""
    return read_captions(*(files or (RU_CAPTIONS,)))


def load(settings: Settings | None = None, *, image_model: str | None = None, coco: bool = True,
         extra_text: bool = False) -> TrainingData:
    """The database's training data (``service.training``), then the knobs above."""
    settings = resolved_settings(settings or load_settings())  # the library's image precision
    encoders = encoders_for(settings)
    exclude = frozenset()
    if not coco:  # every COCO photo held out, as `evaluate --ood` holds out 100 of them
        coco_folder = read_extra_folder(settings.captioned_extra, "manifest.tsv")
        exclude = frozenset(p.name for p in coco_folder.photo_paths) if coco_folder else frozenset()
    data = training_data(make_engine(resolve_url(settings)), settings, encoders, exclude=exclude)
    if image_model and image_model != settings.image_model:
        data = dataclasses.replace(data, photo_features=image_features(settings, image_model, data.photo_keys))
    if extra_text:
        data = with_extra_texts(data, settings, encoders.text)
    return data


def text_whitening(data: TrainingData) -> PartialWhitening:
    """The whitening ``withsense train`` fits: ``ml.train.WHITENING_POWER``, on every text of ``data``."""
    return PartialWhitening(WHITENING_POWER).fit(data.all_text_vectors())


def whitened(data: TrainingData) -> TrainingData:
    """``data`` with every text vector in the served text space (``text_whitening``)."""
    return data.with_text_transform(text_whitening(data))


def photo_files(settings: Settings) -> dict[str, Path]:
    """File name -> file of every photo training may read: the dataset's and the extra folders'."""
    files = {name: path for name, (_split, path) in read_dataset(settings.dataset).photos.items()}
    for folder, manifest in ((settings.extra_dataset, "images_manifest.tsv"),
                             (settings.captioned_extra, "manifest.tsv")):
        extra = read_extra_folder(folder, manifest)
        files.update({p.name: p for p in extra.photo_paths} if extra else {})
    return files


def image_features(settings: Settings, image_model: str, photo_keys) -> np.ndarray:
    """Raw features of ``image_model`` for the photos named ``photo_keys``, as ingestion computes
    them (each part averaged over the photo and its mirror unless it is a view), cached per part."""
    files = photo_files(settings)
    missing = [k for k in photo_keys if k not in files]
    if missing:
        raise FileNotFoundError(f"{len(missing)} training photos are in no photo folder of the settings, e.g. {missing[0]}")
    image = load_encoders("minilm", image_model=image_model, runtime=settings.encoder_runtime,
                          onnx_dir=settings.onnx_path).image
    return cached_image_features([files[k] for k in photo_keys], image, settings.data_dir / "cache")


def with_extra_texts(data: TrainingData, settings: Settings, text_encoder) -> TrainingData:
    """``data`` plus the flickr8k_extra captions of photos that are neither in it nor test photos."""
    extra = read_extra_folder(settings.extra_dataset)
    if extra is None:
        return data
    dataset = read_dataset(settings.dataset)
    skip = set(data.photo_keys.tolist()) | {n for n, (split, _) in dataset.photos.items() if split == "test"}
    texts = [t for name, ts in extra.captions.items() if name not in skip for t in ts]
    if not texts:
        return data
    vectors = cached_text_vectors(texts, text_encoder, settings.data_dir / "cache")
    return dataclasses.replace(data, extra_texts=np.array(texts, dtype=object), extra_vectors=vectors)


def append_result(settings: Settings, name: str, row: dict, out: Path | None = None) -> Path:
    """Print ``row`` and append it as one JSON line to ``out`` (default: the data directory's
    ``research/<name>.jsonl``), so repeated runs build up a table."""
    line = json.dumps(row, default=float)  # numpy scalars as numbers
    print(line, flush=True)
    out = out or settings.data_dir / "research" / f"{name}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(line + "\n")
    return out


def listwise_oof(data: TrainingData, cache: Path, *, reuse: bool, **cv_args) -> tuple[dict | None, dict]:
    """One grouped CV of the listwise network as ``withsense train`` runs it (``ml.compare.grouped_cv``
    with ``cv_args``): its mean figures and out-of-fold output, the output kept in ``cache``; with
    ``reuse`` and the cache there, the output read back and no figures (``None``)."""
    from ml.compare import grouped_cv
    from ml.scorers import candidate_scorers
    from ml.train import default_mapper

    cache.parent.mkdir(parents=True, exist_ok=True)
    if reuse and cache.exists():
        with np.load(cache, allow_pickle=True) as z:
            return None, {k: z[k] for k in z.files}
    cv, pooled = grouped_cv(data, default_mapper(data), {"listwise_mlp": candidate_scorers()["listwise_mlp"]}, **cv_args)
    np.savez(cache, **pooled["listwise_mlp"])
    return cv["listwise_mlp"], pooled["listwise_mlp"]
