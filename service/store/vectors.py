"""Vectors into PostgreSQL by binary COPY: the one writer for encoder vectors of photos and descriptions
(a ranker's rows per photo, with their reranker evidence, are written by ``service.store.ranker_rows``)."""
from __future__ import annotations

from collections.abc import Sequence

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
            for i, (key, vector) in enumerate(zip(keys, vectors, strict=True)):
                row = (int(key), model_id, np.asarray(vector, dtype=np.float32))
                copy.write_row(row if bridges is None else row + (np.asarray(bridges[i], dtype=np.float32),))

