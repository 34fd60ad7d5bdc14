"""Photos under a ranker: the one function that projects image features with a ranker and writes
the rows (``project_photos``), and the backfill of photos the active ranker does not cover yet.

A ranker's row per photo holds everything the reranker reads about it (``ml.listwise.PhotoEvidence``:
joint and bridge vectors, top ImageNet labels with their probabilities, the mapper's output length),
computed once here, never per search. Written by publishing (every photo), by the embedding worker
(each queued upload) and by ``project_missing_photos`` (`withsense ingest`: photos added while a
ranker was being published).

Publishing also writes the ranker's text transform as data (``write_text_transform``): one row per
output component of ``Ranker.transform_query``, which the SQL function ``ranker_query_vector``
(migration 0010) applies, so analysts put a text into the ranker's space without Python.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, Engine, text
from tqdm import tqdm

from ml.ranker import Ranker
from service.config import Settings
from service.store.db import as_array, driver_connection
from service.store.facets import settle_ranker_rows
from service.store.model_rows import active_ranker, load_ranker

BATCH = 500  # photos projected and written per COPY

MISSING_PHOTOS_SQL = text(
    """SELECT f.photo_id, f.embedding FROM photo_embeddings f
       WHERE f.model_id = :image_model_id
         AND NOT EXISTS (SELECT 1 FROM photo_embeddings j
                         WHERE j.photo_id = f.photo_id AND j.model_id = :ranker_id)"""
)


def project_photos(conn: Connection, model_id: int, ranker: Ranker, photo_ids: Sequence[int], features: np.ndarray,
                   *, progress: bool = False) -> None:
    """Photos' rows under the ranker ``model_id``: their image features projected by ``ranker``,
    written by binary COPY in batches of ``BATCH``, inside the caller's transaction."""
    for start in tqdm(range(0, len(photo_ids), BATCH), desc="photo vectors", disable=not progress):
        evidence = ranker.photo_evidence(features[start:start + BATCH])
        _write_rows(conn, model_id, photo_ids[start:start + BATCH], evidence)


def project_missing_photos(engine: Engine, settings: Settings, image_model_id: int) -> int:
    """Give photos added after training (uploads, new ingests) their rows under the active ranker;
    returns how many photos were projected."""
    with engine.connect() as conn:
        model = active_ranker(conn, settings.encoder_key)
        if model is None:
            return 0
        rows = conn.execute(MISSING_PHOTOS_SQL, {"image_model_id": image_model_id, "ranker_id": model.id}).all()
    if not rows:
        return 0
    with engine.begin() as conn:
        project_photos(conn, model.id, load_ranker(model.artifact_path), [r.photo_id for r in rows],
                       np.stack([as_array(r.embedding) for r in rows]))
        settle_ranker_rows(conn, model.id)
    return len(rows)


def write_text_transform(conn: Connection, model_id: int, ranker: Ranker) -> None:
    """The ranker's text transform as rows of ``ranker_text_transform``: component ``c`` of a query
    is ``x . weights_c - bias_c`` before unit normalisation (``linear_form``), exactly what
    ``ranker.transform_query`` computes; identity rows for a ranker that does not transform text."""
    weights, bias = ranker.text_transform.linear_form(ranker.dims)
    with driver_connection(conn).cursor() as cur:
        with cur.copy("COPY ranker_text_transform (model_id, component, weights, bias) "
                      "FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "int4", "vector", "float8"])
            for c in range(weights.shape[1]):
                copy.write_row((model_id, c, np.ascontiguousarray(weights[:, c], np.float32), float(bias[c])))


def _write_rows(conn: Connection, model_id: int, photo_ids: Sequence[int], evidence) -> None:
    with driver_connection(conn).cursor() as cur:
        with cur.copy("COPY photo_embeddings (photo_id, model_id, embedding, bridge, label_ids, label_probs, mapper_norm) "
                      "FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int4", "vector", "vector", "int4[]", "float4[]", "float4"])
            for i, key in enumerate(photo_ids):
                copy.write_row((int(key), model_id, np.asarray(evidence.joint[i], np.float32),
                                np.asarray(evidence.bridge[i], np.float32), [int(v) for v in evidence.label_ids[i]],
                                [float(v) for v in evidence.label_probs[i]], float(evidence.mapper_norm[i])))
