"""All configuration, read from environment variables with defaults. The one place to look.

| variable | default | meaning |
|---|---|---|
| DATABASE_URL | (embedded) | any PostgreSQL with pgvector; unset = the embedded server under the data dir |
| WITHSENSE_DATA_DIR | ./var | embedded database, photo store, model artifacts |
| WITHSENSE_DATASET | ../shared/data/photos if present | the Practicum dataset folder for `ingest dataset` |
| WITHSENSE_EXTRA_DATASET | ../shared/data/flickr8k_extra if present | extra captioned Flickr8k photos, training only |
| WITHSENSE_ENCODER | minilm | `minilm` (MiniLM text + EfficientNet-Lite images) or `clip` |
| WITHSENSE_IMAGE_MODEL | efficientnet-lite0+efficientnet-lite2 | image network(s) for the minilm backend, `+`-joined |
| WITHSENSE_CLIP_PATH | (none) | local directory with CLIPModel weights, for the clip backend |
| WITHSENSE_SHORTLIST | 100 | candidates the SQL nearest-neighbour query hands to the scorer |
| WITHSENSE_HNSW_EF_SEARCH | 100 | pgvector `hnsw.ef_search` for the shortlist query |
| WITHSENSE_API_TOKEN | (none) | bearer token that write endpoints require; unset = writes refused |
| WITHSENSE_RATE_LIMIT | 120 | searches per minute per client address, counted in each worker process (service/ratelimit.py); 0 turns the limit off |
| WITHSENSE_MAX_UPLOAD_MB | 20 | largest accepted upload |
| WITHSENSE_MAX_PIXELS | 50000000 | largest accepted image, in pixels |
| WITHSENSE_DESCRIPTION_WEIGHT | 0.5 | how far a better-matching description written for a photo pulls its score up (0 = image only) |
| WITHSENSE_NEAR_DUPLICATE_DISTANCE | 0.02 | cosine distance of 16x16 fingerprints under which an upload is a near duplicate |
| WITHSENSE_ORPHAN_GRACE_SECONDS | 3600 | store files no photo row points at are deleted by the next ingest run once older than this |
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_shared(name: str) -> str:
    path = REPO_ROOT.parent / "shared" / "data" / name
    return str(path) if path.is_dir() else ""


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=lambda: os.environ.get("DATABASE_URL", ""))
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("WITHSENSE_DATA_DIR", "var")).resolve())
    dataset_dir: str = field(default_factory=lambda: os.environ.get("WITHSENSE_DATASET", _default_shared("photos")))
    extra_dataset_dir: str = field(
        default_factory=lambda: os.environ.get("WITHSENSE_EXTRA_DATASET", _default_shared("flickr8k_extra"))
    )
    encoder: str = field(default_factory=lambda: os.environ.get("WITHSENSE_ENCODER", "minilm"))
    image_model: str = field(default_factory=lambda: os.environ.get("WITHSENSE_IMAGE_MODEL", "efficientnet-lite0+efficientnet-lite2"))
    clip_path: str = field(default_factory=lambda: os.environ.get("WITHSENSE_CLIP_PATH", ""))
    shortlist_size: int = field(default_factory=lambda: int(os.environ.get("WITHSENSE_SHORTLIST", "100")))
    hnsw_ef_search: int = field(default_factory=lambda: int(os.environ.get("WITHSENSE_HNSW_EF_SEARCH", "100")))
    api_token: str = field(default_factory=lambda: os.environ.get("WITHSENSE_API_TOKEN", ""))
    rate_limit_per_minute: int = field(default_factory=lambda: int(os.environ.get("WITHSENSE_RATE_LIMIT", "120")))
    max_upload_mb: int = field(default_factory=lambda: int(os.environ.get("WITHSENSE_MAX_UPLOAD_MB", "20")))
    max_pixels: int = field(default_factory=lambda: int(os.environ.get("WITHSENSE_MAX_PIXELS", "50000000")))
    description_weight: float = field(
        default_factory=lambda: float(os.environ.get("WITHSENSE_DESCRIPTION_WEIGHT", "0.5"))
    )
    near_duplicate_distance: float = field(
        default_factory=lambda: float(os.environ.get("WITHSENSE_NEAR_DUPLICATE_DISTANCE", "0.02"))
    )
    orphan_grace_seconds: float = field(
        default_factory=lambda: float(os.environ.get("WITHSENSE_ORPHAN_GRACE_SECONDS", "3600"))
    )

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def photo_store_dir(self) -> Path:
        return self.data_dir / "photos"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def encoder_key(self) -> str:
        """Names the encoder pair; vectors are stored under it so different encoders never mix."""
        if self.encoder == "clip":
            return f"clip:{Path(self.clip_path).resolve().name}" if self.clip_path else "clip"
        return f"{self.encoder}+{self.image_model}"

    def with_overrides(self, overrides: dict) -> "Settings":
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(overrides)
        values["data_dir"] = Path(values["data_dir"]).resolve()
        return Settings(**values)


def load_settings(**overrides) -> Settings:
    return Settings().with_overrides(overrides) if overrides else Settings()
