"""All configuration: environment variables with defaults, read here and nowhere else.

``Settings`` is a pydantic-settings model: each field names its variable (``alias``), its default
and its bounds, and a bad value fails at start with the variable's name (``SettingsError``). The
README's configuration table lists the same variables; ``tests/test_config.py`` keeps them in step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_shared(name: str) -> str:
    path = REPO_ROOT.parent / "shared" / "data" / name
    return str(path) if path.is_dir() else ""


def _env(name: str, default, description: str, **bounds):
    """A field read from the environment variable ``name`` (also settable by field name in code)."""
    kwargs = {"default_factory": default} if callable(default) else {"default": default}
    return Field(validation_alias=AliasChoices(name), description=description, **kwargs, **bounds)


class SettingsError(ValueError):
    """A configuration variable has a value the service cannot use; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid", populate_by_name=True,
                                      case_sensitive=True)

    database_url: str = _env("DATABASE_URL", "", "any PostgreSQL with pgvector; empty = the embedded server")
    data_dir: Path = _env("WITHSENSE_DATA_DIR", Path("var"), "embedded database, photo store, model artifacts")
    dataset_dir: str = _env("WITHSENSE_DATASET", lambda: _default_shared("photos"),
                            "the Practicum dataset folder for `ingest dataset`")
    extra_dataset_dir: str = _env("WITHSENSE_EXTRA_DATASET", lambda: _default_shared("flickr8k_extra"),
                                  "extra captioned Flickr8k photos, training only")
    captioned_extra_dir: str = _env("WITHSENSE_CAPTIONED_EXTRA", lambda: _default_shared("captioned_extra"),
                                    "more captioned photos (MS-COCO), training only; `evaluate --ood` holds 100 out")
    encoder: Literal["minilm", "clip"] = _env("WITHSENSE_ENCODER", "minilm",
                                              "`minilm` (MiniLM text + EfficientNet-Lite images) or `clip`")
    image_model: str = _env("WITHSENSE_IMAGE_MODEL",
                            "efficientnet-lite0+efficientnet-lite0/crop5+efficientnet-lite0@320+efficientnet-lite2",
                            "image network(s) and views (`/crop5`, `@320`) for the minilm backend, `+`-joined")
    clip_path: str = _env("WITHSENSE_CLIP_PATH", "", "local directory with CLIPModel weights, for the clip backend")
    shortlist_size: int = _env("WITHSENSE_SHORTLIST", 100, "candidates the SQL nearest-neighbour query hands to the scorer",
                               ge=1, le=10_000)
    hnsw_ef_search: int = _env("WITHSENSE_HNSW_EF_SEARCH", 100, "pgvector `hnsw.ef_search` for the shortlist",
                               ge=1, le=1000)
    api_token: str = _env("WITHSENSE_API_TOKEN", "", "bearer token that write endpoints require; empty = writes refused")
    rate_limit_per_minute: int = _env("WITHSENSE_RATE_LIMIT", 120,
                                      "searches per minute per client address, per worker process; 0 = off", ge=0)
    max_upload_mb: int = _env("WITHSENSE_MAX_UPLOAD_MB", 20, "largest accepted upload", ge=1, le=1024)
    max_pixels: int = _env("WITHSENSE_MAX_PIXELS", 50_000_000, "largest accepted image, in pixels", ge=1)
    # 0.9: the ranker's score is a calibrated probability (issue 12), so a matching description,
    # direct evidence of what the photo shows, must be able to lift a photo above any content score.
    description_weight: float = _env("WITHSENSE_DESCRIPTION_WEIGHT", 0.9,
                                     "how far a better-matching description pulls a photo's score up (0 = image only)",
                                     ge=0.0, le=1.0)
    near_duplicate_distance: float = _env("WITHSENSE_NEAR_DUPLICATE_DISTANCE", 0.02,
                                          "cosine distance of 16x16 fingerprints under which an upload is a near duplicate",
                                          ge=0.0, le=2.0)
    orphan_grace_seconds: float = _env("WITHSENSE_ORPHAN_GRACE_SECONDS", 3600.0,
                                       "store files no photo row points at are deleted by the next ingest once older than this",
                                       ge=0.0)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return Path(value).resolve()

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
        return load_settings(**{**self.model_dump(), **overrides})


def env_names() -> dict[str, str]:
    """Field name -> environment variable, for docs and tests."""
    return {name: field.validation_alias.choices[0] for name, field in Settings.model_fields.items()}


def load_settings(**overrides) -> Settings:
    """Settings from the environment, then ``overrides`` by field name (tests and ``create_app`` pass theirs).

    Raises ``SettingsError`` naming the variable when a value is invalid, and ``ValueError`` for an
    override that is no setting at all.
    """
    unknown = set(overrides) - set(Settings.model_fields)
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        names = env_names()
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            name = names.get(field, field)
            problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
