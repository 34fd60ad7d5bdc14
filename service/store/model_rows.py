"""Rows of the models table: encoders (get-or-create), rankers (insert, activate) and the one query
for the active ranker per encoder pair, as a typed row (``ModelRow``)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, text

from ml.ranker import Ranker
from ml.versions import package_versions, version_mismatches
from service.config import Settings


class ModelMismatch(RuntimeError):
    """Vectors of one model would be compared with vectors of another."""


def check_package_versions(what: str, recorded: dict) -> None:
    """Refuse a model whose vectors were made by other package versions than the installed ones."""
    differences = version_mismatches(recorded or {}, package_versions())
    if differences:
        listed = ", ".join(f"{name} {was} (installed: {now or 'none'})" for name, (was, now) in sorted(differences.items()))
        raise ModelMismatch(
            f"{what} was made with {listed}: its vectors cannot be compared with the installed packages'. "
            "Install the locked versions (requirements.lock), or ingest and train anew in a fresh database"
        )


def _ensure_encoder(conn: Connection, name: str, dims: int, encoder_key: str) -> int:
    conn.execute(text(
        """INSERT INTO models (kind, name, version, encoder_key, dims, package_versions)
           VALUES ('encoder', :name, '1', :key, :dims, CAST(:packages AS jsonb))
           ON CONFLICT (kind, name, version) DO NOTHING"""
    ), {"name": name, "key": encoder_key, "dims": dims, "packages": json.dumps(package_versions())})
    model_id, stored_dims, recorded = conn.execute(
        text("SELECT id, dims, package_versions FROM models WHERE kind = 'encoder' AND name = :name AND version = '1'"),
        {"name": name},
    ).one()
    if stored_dims != dims:
        raise ModelMismatch(f"encoder {name} is stored with {stored_dims} dimensions but now gives {dims}")
    check_package_versions(f"encoder {name}", recorded)
    return model_id


def encoder_model_ids(engine: Engine, settings: Settings, *, text_encoder=None, image_encoder=None) -> dict[str, int]:
    """Model ids of the given encoders, registering them on first use. A query-only encoder (MiniLM
    int8, ``WITHSENSE_QUERY_PRECISION``) stores nothing: it has no row of its own and gets none."""
    if getattr(text_encoder, "precision", "fp32") != "fp32":
        raise ValueError(f"{text_encoder.name} at {text_encoder.precision} encodes search queries only: "
                         "stored text vectors are full precision")
    ids = {}
    with engine.begin() as conn:
        if text_encoder is not None:
            ids["text"] = _ensure_encoder(conn, f"text:{text_encoder.name}", text_encoder.dim, settings.encoder_key)
        if image_encoder is not None:
            ids["image"] = _ensure_encoder(conn, f"image:{image_encoder.name}", image_encoder.dim, settings.encoder_key)
    return ids


@dataclass(frozen=True)
class ModelRow:
    """A ranker's row of the models table: what searching with it, projecting photos under it and
    the selection rule read."""

    id: int
    name: str
    version: str
    dims: int
    artifact_path: str
    metrics: dict[str, Any] | None  # CV figures, the chosen scorer, the calibration (ml.train)
    package_versions: dict[str, str] | None  # the versions its vectors were made with (ml.versions)

    def describe(self) -> str:
        return f"active ranker {self.name} {self.version}"


ACTIVE_RANKER_SQL = text(
    """SELECT id, name, version, dims, artifact_path, metrics, package_versions FROM models
       WHERE kind = 'ranker' AND active AND encoder_key = :key"""
)


def active_ranker(conn: Connection, encoder_key: str) -> ModelRow | None:
    """The active ranker for an encoder pair (None: nothing trained yet). The one query for it: the
    search path's cache, similar photos, readiness, training and the photo writers all call this."""
    row = conn.execute(ACTIVE_RANKER_SQL, {"key": encoder_key}).mappings().first()
    return ModelRow(**row) if row else None


def insert_ranker(conn: Connection, *, name: str, version: str, encoder_key: str, dims: int, params: dict,
                  metrics: dict, artifact_path: str) -> int:
    """A new, inactive ranker row; returns its id."""
    return conn.execute(text(
        """INSERT INTO models (kind, name, version, encoder_key, dims, params, metrics, artifact_path,
                              package_versions)
           VALUES ('ranker', :name, :version, :key, :dims, CAST(:params AS jsonb), CAST(:metrics AS jsonb), :path,
                   CAST(:packages AS jsonb))
           RETURNING id"""
    ), {"name": name, "version": version, "key": encoder_key, "dims": dims, "params": json.dumps(params),
        "metrics": json.dumps(metrics, default=str), "path": artifact_path,
        "packages": json.dumps(package_versions())}).scalar_one()


def activate_ranker(conn: Connection, model_id: int, encoder_key: str) -> None:
    """The ranker ``model_id`` becomes the active one of its encoder pair (the old one goes off)."""
    conn.execute(text("UPDATE models SET active = false WHERE kind = 'ranker' AND encoder_key = :key AND active"),
                 {"key": encoder_key})
    conn.execute(text("UPDATE models SET active = true WHERE id = :id"), {"id": model_id})


@lru_cache(maxsize=4)
def load_ranker(artifact_path: str, scorer: str | None = None) -> Ranker:
    """A published ranker, loaded once per process: artifact folders never change after publishing
    (the version is in the path), so searches, uploads and similar-photo requests share one copy.
    ``scorer`` names another reranker family saved beside the chosen one (evaluations only)."""
    return Ranker.load(artifact_path, scorer=scorer)
