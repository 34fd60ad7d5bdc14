"""The ranker's query bridge for other languages (``ml.multilingual.QueryBridge``), fitted when the
ranker is trained: USE multilingual's vectors of the training texts -> the ranker's text space.

Fitted on every text the training data holds (captions, rated texts) plus the ImageNet label
phrases, as the ranker's whitening is fitted on every text: on the full data ~12,000 texts; on
the 16-photo fixture the ~1,100 phrases are mostly the labels, which keeps the bridge usable there.
USE's vectors are cached per text (``<data dir>/cache/usem3-text.npz``), so a second training
encodes only the new texts.

The bridge also reads Russian itself: the Russian captions of rated training photos written by hand
(``russian_captions/``, 764 on the full data; never of a test photo) are fitted towards their English
captions' vectors, each with the weight ``PARALLEL_WEIGHT`` (docs/model.md, "Russian captions in the
bridge's fit"). Those whose photo the training data does not hold are left out.

The bridge carries the word gloss (``ml.word_gloss``): the English words of the same texts and their
USE vectors (2,412 words seen at least 3 times on the full data of 2026-12-03), and, where the dictionary
``WITHSENSE_GLOSS_DICTIONARY`` names is installed, the Russian word forms its translations take
(``ml.gloss_dictionary``).
"""
from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ml.data import TrainingData, cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.gloss_dictionary import GlossDictionary, build
from ml.multilingual import QueryBridge, bridge_texts
from ml.ranker import Ranker
from ml.word_gloss import WordGloss, vocabulary
from service.config import Settings

BRIDGE_ALPHA = 1.0  # ridge penalty, chosen by grouped CV (docs/model.md, "Queries in other languages")
# The joint cosine's share in a bridged query's order (``Ranker.score``): the served share (ml.blend,
# chosen on MiniLM's queries) costs bridged ones R@1; chosen by grouped CV on bridged queries
# (python -m research.cv_bridged_order --parallel-weight 3; docs/model.md, "The order of a bridged query").
BRIDGED_COS_SHARE = 5.0
# Hand-written Russian captions of rated training photos (caption_id, text_en: the dataset's caption,
# text_ru), and the weight of each in the bridge's fit next to the English texts' 1: chosen by grouped
# CV on the Russian captions of held-out photos (python -m research.cv_parallel_captions).
RUSSIAN_CAPTIONS = tuple(sorted(Path(__file__).with_name("russian_captions").glob("*.tsv")))
PARALLEL_WEIGHT = 3.0


def fit_query_bridge(data: TrainingData, ranker: Ranker, encoder, settings: Settings) -> QueryBridge:
    labels = imagenet_label_texts() if data.bridge_kind == "imagenet_labels" else []
    texts, vectors = bridge_texts(data, labels)
    russian, english_vectors = parallel_captions(data)
    weights = np.r_[np.ones(len(texts)), np.full(len(russian), PARALLEL_WEIGHT)]
    cache = settings.data_dir / "cache"
    bridge = QueryBridge(encoder.name, alpha=BRIDGE_ALPHA).fit(
        cached_text_vectors([*texts, *russian], encoder, cache),
        ranker.transform_query(np.concatenate([vectors, english_vectors])), sample_weight=weights)
    bridge.cos_share = BRIDGED_COS_SHARE
    bridge.n_parallel_ = len(russian)
    words = vocabulary(texts)
    if words:
        bridge.gloss = WordGloss().fit(words, cached_text_vectors(words, encoder, cache))
        bridge.gloss.dictionary = gloss_dictionary(words, settings)
    return bridge


def parallel_captions(data: TrainingData, files: Sequence[Path] = RUSSIAN_CAPTIONS) -> tuple[list[str], np.ndarray]:
    """The hand-written Russian captions of ``data``'s photos and their English captions' vectors
    (``data``'s own, in its text space): those of photos ``data`` does not hold (a fold's held-out
    photos, a library without the dataset) are left out."""
    caption_of = {(key, text): i for i, (key, text) in
                  enumerate(zip(data.photo_keys[data.caption_photo].tolist(), data.caption_texts.tolist(), strict=True))}
    russian, rows = [], []
    for row in read_captions(*files):
        i = caption_of.get((row["caption_id"].split("#")[0], row["text_en"]))
        if i is not None:
            russian.append(row["text_ru"])
            rows.append(i)
    return russian, data.caption_vectors[np.asarray(rows, int)]


def read_captions(*files: Path) -> list[dict]:
    """The rows of hand-written caption files (UTF-8, tab-separated, no quoting, a header line)."""
    rows = []
    for path in files:
        with open(path, encoding="utf-8", newline="") as f:
            rows += list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows


def gloss_dictionary(words: Sequence[str], settings: Settings) -> GlossDictionary | None:
    """The dictionary's Russian forms of ``words``' translations, or None (the gloss then takes USE's
    nearest word for every word) where ``WITHSENSE_GLOSS_DICTIONARY`` is empty or not installed."""
    if not settings.gloss_dictionary:
        return None
    if not Path(settings.gloss_dictionary).exists():
        print(f"{settings.gloss_dictionary} is not installed (Debian: apt-get install mueller7-dict): Russian "
              "query words are glossed by USE's nearest English words alone", file=sys.stderr)
        return None
    return build(words, settings.gloss_dictionary)
