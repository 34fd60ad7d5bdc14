"""What the studies of bridged queries share (``cv_bridged_order``, ``cv_parallel_captions``,
``cv_caption_count``, ``cv_bridged_prf``, ``cv_nonlinear_bridge``, ``cv_gloss_function_words``), used as
``from research import bridged_folds as study``:
their command line and inputs; the product's grouped folds, with the served listwise network, the
word gloss and the query bridge fitted on the training photos in each; galleries of 100 held-out photos with the
queries about them; and the recall table the studies print and save."""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator

import numpy as np

from ml import metrics as M
from ml.compare import _galleries, fit_mapper, oof_evidence, reference_captions, training_lists
from ml.data import TrainingData, cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.listwise import FEATURES, list_features, photo_evidence, specificity
from ml.multilingual import QueryBridge
from ml.scorers import KerasListwiseMLP
from ml.train import default_mapper
from ml.word_gloss import WordGloss, vocabulary
from research.cv_bridged_reranker import _one_thread, folds
from research.data import load, text_whitening
from service.config import Settings, load_settings
from service.runtime import encoders_for
from service.store.library_precision import resolved_settings
from service.training.query_bridge import BRIDGED_COS_SHARE, RUSSIAN_CAPTIONS, gloss_dictionary, parallel_captions


@dataclasses.dataclass
class StudyInputs:
    """The product's settings, training data and encoders, USE's vectors of the data's captions and
    of the label phrases (the bridge's English side), and the data in the ranker's whitened space."""

    settings: Settings
    data: TrainingData
    encoders: object
    use: object
    cache: object
    u_caption: np.ndarray
    u_label: np.ndarray
    whitening: object
    dw: TrainingData

    def glossed(self, gloss: WordGloss, texts: list[str]) -> np.ndarray:
        """MiniLM's whitened vectors of ``texts``' word glosses."""
        return self.whitening.transform(self.encoders.text.encode([gloss.gloss(t, self.use.encode) for t in texts]))


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """A study's command line: its docstring, the number of folds and the seed."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="the folds' shuffle and the lists' draws (0: grouped_cv's)")
    return ap


def inputs() -> StudyInputs:
    """What every study starts from (``research.data.load``'s training data), TensorFlow on one thread."""
    _one_thread()
    settings = resolved_settings(load_settings())
    data = load(settings)
    encoders = encoders_for(settings)
    use, cache = encoders.multilingual, settings.data_dir / "cache"
    whitening = text_whitening(data)
    u_caption = cached_text_vectors(data.caption_texts.tolist(), use, cache)
    u_label = cached_text_vectors(imagenet_label_texts(), use, cache)
    return StudyInputs(settings, data, encoders, use, cache, u_caption, u_label, whitening,
                       data.with_text_transform(whitening))


@dataclasses.dataclass
class ServedFold:
    """One fold: its held-out photos, the training photos' data, and what was fitted on them."""

    val: np.ndarray
    tdata: TrainingData
    in_train: np.ndarray  # of the data's captions, those of the training photos
    seed: int
    evidence: np.ndarray
    net: KerasListwiseMLP
    gloss: WordGloss
    reference: np.ndarray
    n_photos: int  # in the whole data, held out or not


def served_folds(x: StudyInputs, n_folds: int, seed: int, dictionary: bool = True) -> Iterator[ServedFold]:
    """The product's folds with the served network fitted in each (``seed``: the folds' shuffle and
    the lists' draws). The gloss takes the bilingual dictionary, as served where it is installed,
    unless ``dictionary`` is False."""
    dw = x.dw
    mapper = default_mapper(dw)
    for fold, val in enumerate(folds(dw, n_folds, seed)):
        train_mask = np.ones(len(dw.photo_keys), bool)
        train_mask[val] = False
        tdata = dw.subset_photos(np.flatnonzero(train_mask))
        fold_seed = seed + fold
        evidence = photo_evidence(fit_mapper(mapper, tdata), dw.photo_features, dw.label_vectors, dw.bridge_kind)
        lists = training_lists(tdata, oof_evidence(mapper, tdata, 3, fold_seed), random_state=fold_seed)
        net = KerasListwiseMLP(random_state=seed).fit(lists.X, lists.target, rated=lists.rated)
        words = vocabulary([*tdata.caption_texts.tolist(), *imagenet_label_texts()])
        gloss = WordGloss().fit(words, cached_text_vectors(words, x.use, x.cache))
        if dictionary:
            gloss.dictionary = gloss_dictionary(words, x.settings)
        yield ServedFold(val, tdata, train_mask[dw.caption_photo], fold_seed, evidence, net, gloss,
                         reference_captions(tdata)[0], len(dw.photo_keys))


def bridge(x: StudyInputs, fold: ServedFold, weight, files=RUSSIAN_CAPTIONS) -> QueryBridge:
    """The fold's bridge as the product fits it (``fit_query_bridge``): the training photos' captions
    and the label phrases, with the Russian captions (of ``files``) of the training photos at
    ``weight`` (one for all, or one per file)."""
    source, target, sample_weight = bridge_texts(x, fold, weight, files)
    return QueryBridge().fit(source, target, sample_weight=sample_weight)


def bridge_texts(x: StudyInputs, fold: ServedFold, weight, files=RUSSIAN_CAPTIONS) -> tuple[np.ndarray, ...]:
    """What ``bridge`` fits on: USE's vectors of the texts, their targets in the ranker's space, and
    each text's weight."""
    per_file = [parallel_captions(fold.tdata, (f,)) for f in files]
    russian = [t for texts, _ in per_file for t in texts]
    english = np.concatenate([vectors for _, vectors in per_file])
    u_russian = (cached_text_vectors(russian, x.use, x.cache) if russian
                 else np.empty((0, x.u_caption.shape[1]), np.float32))
    file_weights = np.broadcast_to(np.asarray(weight, float), (len(files),))
    sample_weight = np.r_[np.ones(int(fold.in_train.sum()) + len(x.u_label)),
                          np.repeat(file_weights, [len(texts) for texts, _ in per_file])]
    return (np.concatenate([x.u_caption[fold.in_train], x.u_label, u_russian]),
            np.concatenate([fold.tdata.caption_vectors, x.dw.label_vectors, english]), sample_weight)


def query_galleries(fold: ServedFold, query_photo: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Galleries of 100 of the fold's held-out photos (drawn with the fold's seed), each with the
    queries (indices into ``query_photo``, the photo each query is about) whose photo it holds and
    that photo's position."""
    for gal in _galleries(fold.val, 100, np.random.default_rng(fold.seed)):
        pos = np.full(fold.n_photos, -1)
        pos[gal] = np.arange(len(gal))
        qs = np.flatnonzero(pos[query_photo] >= 0)
        if len(qs):
            yield gal, qs, pos[query_photo[qs]]


def scored(net, queries, gallery, evidence, label_vectors, reference) -> tuple[np.ndarray, np.ndarray]:
    """The network's scores and the joint cosines of ``queries`` against every photo of ``gallery``."""
    X = list_features(queries, np.tile(gallery, (len(queries), 1)), evidence, label_vectors,
                      specificity(queries, reference))
    return net.predict(X), X[..., FEATURES.index("cos_joint")]


def rank_served(x: StudyInputs, fold: ServedFold, views: dict[str, np.ndarray], query_photo: np.ndarray,
                group: np.ndarray, ranks: dict[str, list[np.ndarray]]) -> None:
    """Each view's queries (``views``: name -> one vector per query, in the ranker's space) against the
    fold's galleries, ordered as a bridged query is served (the network plus ``BRIDGED_COS_SHARE``
    times the joint cosine); the right photos' ranks go to ``ranks`` under "<view>, <group>" for each
    of ``group``'s names (one per query) and "<view>, all"."""
    for gal, qs, right in query_galleries(fold, query_photo):
        for name, vectors in views.items():
            s, c = scored(fold.net, vectors[qs], gal, fold.evidence, x.dw.label_vectors, fold.reference)
            r = M.ranks_of_correct(s + BRIDGED_COS_SHARE * c, right)
            for part in dict.fromkeys(group.tolist()):
                ranks.setdefault(f"{name}, {part}", []).append(r[group[qs] == part])
            ranks.setdefault(f"{name}, all", []).append(r)


def russian_queries(data: TrainingData, rows: list[dict]) -> tuple[np.ndarray, list[str]]:
    """The photo (an index into ``data.photo_keys``) and the Russian text of each caption row."""
    key = {k: i for i, k in enumerate(data.photo_keys)}
    return np.array([key[r["caption_id"].split("#")[0]] for r in rows]), [r["text_ru"] for r in rows]


def recall_table(ranks: dict[str, list[np.ndarray]], width: int = 24) -> dict[str, dict]:
    """R@1/5/10 of each name's ranks, printed a line each; a name no query reached is left out."""
    table = {}
    for name, rs in ranks.items():
        r = np.concatenate(rs)
        if not len(r):
            continue
        table[name] = {"n": len(r), **{f"R@{k}": round(float(np.mean(r <= k)), 4) for k in (1, 5, 10)}}
        print(f"{name:{width}s} ({len(r)}) R@1 {table[name]['R@1']:.3f}  R@5 {table[name]['R@5']:.3f}  "
              f"R@10 {table[name]['R@10']:.3f}")
    return table
