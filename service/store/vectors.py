"""Vectors into PostgreSQL by binary COPY: the one writer for photo and description embeddings."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sqlalchemy import Connection

from service.store.db import driver_connection


def write_vectors(conn: Connection, table: str, key_column: str, model_id: int, keys: Sequence[int],
                  vectors: np.ndarray, bridges: np.ndarray | None = None) -> None:
    """Vectors (and, for a ranker's photo rows, their bridge vectors) by binary COPY."""
    columns = f"{key_column}, model_id, embedding" + (", bridge" if bridges is not None else "")
    with driver_connection(conn).cursor() as cur:
        with cur.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int4", "vector"] + (["vector"] if bridges is not None else []))
            for i, (key, vector) in enumerate(zip(keys, vectors)):
                row = (int(key), model_id, np.asarray(vector, dtype=np.float32))
                copy.write_row(row if bridges is None else row + (np.asarray(bridges[i], dtype=np.float32),))


def write_ranker_rows(conn: Connection, model_id: int, photo_ids: Sequence[int], evidence) -> None:
    """A ranker's rows per photo by binary COPY: joint and bridge vectors, top ImageNet labels with
    their probabilities and the mapper's output length (``ml.listwise.PhotoEvidence``)."""
    with driver_connection(conn).cursor() as cur:
        with cur.copy("COPY photo_embeddings (photo_id, model_id, embedding, bridge, label_ids, label_probs, mapper_norm) "
                      "FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int4", "vector", "vector", "int4[]", "float4[]", "float4"])
            for i, key in enumerate(photo_ids):
                copy.write_row((int(key), model_id, np.asarray(evidence.joint[i], np.float32),
                                np.asarray(evidence.bridge[i], np.float32), [int(v) for v in evidence.label_ids[i]],
                                [float(v) for v in evidence.label_probs[i]], float(evidence.mapper_norm[i])))
