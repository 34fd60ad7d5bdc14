"""The model's calibrated score of every expert-rated pair, written when a ranker is published
(``ranker_pair_scores``, migration 0010), so analysts can set it beside the expert mean in SQL.

A pair's score is what the search path's reranker gives the photo when the description is the query,
as ``Searcher.search(hybrid=False)`` computes it: the description's text vector in the ranker's
space, the ``settings.shortlist`` nearest photos (by the same cosine as the SQL shortlist) and
``Ranker.score`` over them, a calibrated probability that experts say the description fits. A rated
photo outside that shortlist is scored with the shortlist (one more candidate) and marked
``in_shortlist = false``: a search would not have shown it. Computed in numpy from the rows just
written, inside the publishing transaction.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from sqlalchemy import Connection, text

from ml.ranker import Ranker
from service.search.searcher import evidence_of
from service.store.db import as_array

RANKER_PHOTOS_SQL = text(
    """SELECT photo_id, embedding AS photo_vector, bridge AS photo_bridge, label_ids, label_probs, mapper_norm
       FROM photo_embeddings WHERE model_id = :model_id ORDER BY photo_id"""
)

EXPERT_PAIRS_SQL = text(
    """SELECT DISTINCT er.photo_id, er.description_id, de.embedding AS text_vector
       FROM expert_ratings er
       JOIN description_embeddings de ON de.description_id = er.description_id AND de.model_id = :text_model_id
       ORDER BY er.description_id, er.photo_id"""
)

INSERT_SQL = text(
    """INSERT INTO ranker_pair_scores (model_id, photo_id, description_id, score, in_shortlist)
       SELECT :model_id, p, d, s, i
       FROM unnest(CAST(:photo_ids AS bigint[]), CAST(:description_ids AS bigint[]), CAST(:scores AS float8[]),
                   CAST(:in_shortlist AS boolean[])) AS t(p, d, s, i)"""
)


def score_expert_pairs(conn: Connection, model_id: int, ranker: Ranker, text_model_id: int, shortlist: int) -> int:
    """Write the ranker's score of each expert-rated pair; returns how many were written."""
    photos = conn.execute(RANKER_PHOTOS_SQL, {"model_id": model_id}).all()
    pairs = conn.execute(EXPERT_PAIRS_SQL, {"text_model_id": text_model_id}).all()
    if not photos or not pairs:
        return 0
    evidence = evidence_of(photos)
    row_of = {r.photo_id: i for i, r in enumerate(photos)}
    by_description: dict[int, tuple[np.ndarray, list[int]]] = {}
    rated = defaultdict(list)
    for p in pairs:
        if p.photo_id in row_of:
            by_description.setdefault(p.description_id, as_array(p.text_vector))
            rated[p.description_id].append(p.photo_id)
    out = {"photo_ids": [], "description_ids": [], "scores": [], "in_shortlist": []}
    for description_id, text_vector in by_description.items():
        q = ranker.transform_query(text_vector)
        similarity = evidence.joint @ q
        order = np.lexsort((np.arange(len(similarity)), -similarity))  # the SQL's ORDER BY similarity, id
        candidates = list(order[:shortlist])
        missing = [row_of[p] for p in rated[description_id] if row_of[p] not in set(candidates)]
        for row in missing:  # each outsider scored with the shortlist, alone: as if it were one more candidate
            scores = ranker.score(q, evidence.take(np.array(candidates + [row])))
            _add(out, photos[row].photo_id, description_id, scores[-1], False)
        scores = ranker.score(q, evidence.take(np.array(candidates)))
        position = {row: i for i, row in enumerate(candidates)}
        for p in rated[description_id]:
            if row_of[p] in position:
                _add(out, p, description_id, scores[position[row_of[p]]], True)
    conn.execute(INSERT_SQL, {"model_id": model_id, **out})
    return len(out["scores"])


def _add(out: dict, photo_id: int, description_id: int, score: float, in_shortlist: bool) -> None:
    out["photo_ids"].append(int(photo_id))
    out["description_ids"].append(int(description_id))
    out["scores"].append(float(score))
    out["in_shortlist"].append(in_shortlist)
