"""The ranker's query bridge for other languages (``ml.multilingual.QueryBridge``), fitted when the
ranker is trained: USE multilingual's vectors of the training texts -> the ranker's text space.

Fitted on every text the training data holds (captions, rated texts) plus the ImageNet label
phrases, as the ranker's whitening is fitted on every text: on the full data ~12,000 texts; on
the 16-photo fixture the ~1,100 phrases are mostly the labels, which keeps the bridge usable there.
USE's vectors are cached per text (``<data dir>/cache/usem3-text.npz``), so a second training
encodes only the new texts.

The bridge carries the word gloss (``ml.word_gloss``): the English words of the same texts and their
USE vectors (2,412 words seen at least 3 times on the full data of 2026-12-03), and, where the dictionary
``WITHSENSE_GLOSS_DICTIONARY`` names is installed, the Russian word forms its translations take
(``ml.gloss_dictionary``).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

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
# (python -m research.cv_bridged_order; docs/model.md, "The order of a bridged query").
BRIDGED_COS_SHARE = 0.0


def fit_query_bridge(data: TrainingData, ranker: Ranker, encoder, settings: Settings) -> QueryBridge:
    labels = imagenet_label_texts() if data.bridge_kind == "imagenet_labels" else []
    texts, vectors = bridge_texts(data, labels)
    cache = settings.data_dir / "cache"
    bridge = QueryBridge(encoder.name, alpha=BRIDGE_ALPHA).fit(cached_text_vectors(texts, encoder, cache),
                                                               ranker.transform_query(vectors))
    bridge.cos_share = BRIDGED_COS_SHARE
    words = vocabulary(texts)
    if words:
        bridge.gloss = WordGloss().fit(words, cached_text_vectors(words, encoder, cache))
        bridge.gloss.dictionary = gloss_dictionary(words, settings)
    return bridge


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
