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


# The committed 16-photo cut of the dataset: what a checkout without ../shared loads.
FIXTURE_DATASET = REPO_ROOT / "tests" / "fixtures" / "dataset"


def _default_shared(name: str) -> str:
    path = REPO_ROOT.parent / "shared" / "data" / name
    return str(path) if path.is_dir() else ""


def _default_dataset() -> str:
    """../shared/data/photos beside the checkout, else the fixture dataset, so `make demo` runs anywhere."""
    return _default_shared("photos") or (str(FIXTURE_DATASET) if FIXTURE_DATASET.is_dir() else "")


# Printed when the fixture dataset stands in for the full one: how to point at the full data and
# where the public data comes from. Text only: nothing here downloads anything.
FIXTURE_DATASET_NOTICE = (
    "no dataset at ../shared/data/photos: using the 16-photo fixture (tests/fixtures/dataset). For the full "
    "1,100 photos set WITHSENSE_DATASET to the Practicum dataset folder (Yandex Practicum's "
    "dsplus_integrated_project_4, a Flickr8k subset, public in the GitHub repository vzwork/deep_image_search, "
    "datasets/; Flickr8k itself is given out by the University of Illinois for research use)"
)


ENV_PREFIX = "WITHSENSE_"


def _setting(default, description: str, **bounds):
    """A field read from ``WITHSENSE_<FIELD NAME>`` (also settable by field name in code)."""
    kwargs = {"default_factory": default} if callable(default) else {"default": default}
    return Field(description=description, **kwargs, **bounds)


class SettingsError(ValueError):
    """A configuration variable has a value the service cannot use; the message names it."""


class Settings(BaseSettings):
    # Each field is read from WITHSENSE_<FIELD> (pydantic-settings matches the prefixed name
    # case-insensitively, so the upper-case variable finds the lower-case field); DATABASE_URL keeps
    # the name every PostgreSQL tool uses.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, case_sensitive=False, frozen=True, extra="forbid",
                                      validate_by_name=True)

    database_url: str = Field("", validation_alias=AliasChoices("DATABASE_URL"),
                              description="any PostgreSQL with pgvector; empty = the embedded server")
    data_dir: Path = _setting(Path("var"), "embedded database, photo store, model artifacts")
    dataset: str = _setting(_default_dataset,
                            "the Practicum dataset folder for `ingest dataset`; default ../shared/data/photos, "
                            "else the fixture dataset")
    extra_dataset: str = _setting(lambda: _default_shared("flickr8k_extra"),
                                  "extra captioned Flickr8k photos, training only")
    captioned_extra: str = _setting(lambda: _default_shared("captioned_extra"),
                                    "more captioned photos (MS-COCO), training only; `evaluate --ood` holds 100 out")
    encoder: Literal["minilm", "clip"] = _setting("minilm",
                                                  "`minilm` (MiniLM text + EfficientNet-Lite images) or `clip`")
    image_model: str = _setting("efficientnet-lite0+efficientnet-lite0/crop5+efficientnet-lite0@320+efficientnet-lite1+efficientnet-lite2",
                                "image network(s) and views (`/crop5`, `@320`) for the minilm backend, `+`-joined")
    encoder_runtime: Literal["onnx", "torch"] = _setting("onnx",
                                                         "`onnx` (ONNX Runtime, no torch in the server) or `torch` for the minilm backend's networks")
    image_precision: Literal["", "fp32", "int8"] = _setting("",
                                                            "`int8` (the image networks quantized, ONNX Runtime only, "
                                                            "about 2x faster ingestion) or `fp32`; empty = the library's "
                                                            "own, `int8` for a new one. Other vectors, stored and ranked "
                                                            "apart: a value other than the library's is refused")
    query_precision: Literal["fp32", "int8"] = _setting("int8",
                                                        "the precision search queries are encoded at: `int8` (MiniLM "
                                                        "quantized, 2x faster, ranks as well by grouped CV) or `fp32`; "
                                                        "the minilm backend on ONNX Runtime only (fp32 elsewhere). "
                                                        "Stored vectors and training stay fp32, so it may change any time")
    onnx_dir: str = _setting("",
                             "where the networks exported to ONNX are kept; empty = `$WITHSENSE_DATA_DIR/onnx`")
    embed_batch: int = _setting(32,
                                "photos per batch when image features are computed (dataset, folder, upload queue)",
                                ge=1, le=1024)
    clip_path: str = _setting("", "local directory with CLIPModel weights, for the clip backend")
    shortlist: int = _setting(100, "candidates the SQL nearest-neighbour query hands to the scorer",
                              ge=1, le=10_000)
    # Each description search adds its nearest descriptions' photos: 30 (six pages of 5) keep the top 5
    # of 100 (4.95 of 5 photos alike, the first the same in 343 of 344 searches) at 0.6 of the
    # statement's time at a million photos (docs/scaling.md, "Eighth session").
    description_shortlist: int = _setting(30, "candidates each description search (MiniLM's, USE's) adds to the "
                                          "shortlist, beside the photo search's `WITHSENSE_SHORTLIST`",
                                          ge=1, le=10_000)
    hnsw_ef_search: int = _setting(100, "pgvector `hnsw.ef_search` for the shortlist",
                                   ge=1, le=1000)
    hnsw_min_photos: int = _setting(2_000,
                                    "photos under the active ranker from which the shortlist uses its HNSW index "
                                    "(below it an exact scan is as fast and exact)", ge=0)
    facet_index_min_share: float = _setting(0.05,
                                            "share of the library's photos a place, camera or uploader must "
                                            "hold to get HNSW indexes of its own for searches filtered by it; "
                                            "0 = none", ge=0.0, le=1.0)
    model_refresh_seconds: float = _setting(2.0,
                                            "how often a serving process checks which ranker is active", ge=0.0, le=3600.0)
    query_cache_size: int = _setting(4096,
                                     "query vectors kept per process (LRU); 0 = off", ge=0, le=1_000_000)
    gloss_dictionary: str = _setting("/usr/share/dictd/mueller7.dict.dz",
                                     "English-Russian dictionary (dictd format; Debian's `mueller7-dict`) read when a "
                                     "ranker is trained: Russian query words are glossed by its translations "
                                     "(ml/gloss_dictionary.py); empty or absent = USE's nearest words alone")
    bind: str = _setting("127.0.0.1:8000", "address gunicorn listens on (`withsense serve --host/--port` override it)")
    workers: int = _setting(2, "gunicorn worker processes", ge=1, le=64)
    threads: int = _setting(4, "gunicorn threads per worker (gthread)", ge=1, le=256)
    read_timeout: float = _setting(10.0,
                                   "longest a client may take to send a request body (and the longest "
                                   "silence while sending it) before the connection is dropped", gt=0.0, le=600.0)
    metrics_dir: str = _setting("",
                                "shared folder for gunicorn workers' Prometheus metrics; empty = a fresh temporary one")
    api_token: str = _setting("", "bootstrap admin token for the demo and tests (writes as the user 'bootstrap'); "
                                  "empty = only users' keys write")
    rate_limit: int = _setting(120,
                               "searches per minute per client address, shared by all workers and servers "
                               "(counted in PostgreSQL); 0 = off", ge=0)
    write_rate_limit: int = _setting(120, "writes per minute per person (by key), shared by all workers and servers; "
                                          "admins are not limited; 0 = off", ge=0)
    behind_tls: bool = _setting(False,
                                "the service is reached over HTTPS (TLS ends at the proxy): send HSTS and mark the "
                                "session cookie Secure")
    session_hours: float = _setting(12.0, "how long a web page's sign-in lasts before the key must be sent again",
                                    gt=0.0, le=24.0 * 90)
    key_failure_limit: int = _setting(20, "wrong, unknown or revoked keys per minute per client address before "
                                          "every request with a key from it gets 429 for the rest of the minute "
                                          "(shared, independent of the rate limits); 0 = off", ge=0)
    trusted_proxies: str = _setting("", "comma-separated addresses or networks of reverse proxies whose "
                                        "X-Forwarded-For / X-Real-IP names the client; empty = the peer's "
                                        "address is the client's")
    max_upload_mb: int = _setting(20, "largest accepted upload", ge=1, le=1024)
    max_pixels: int = _setting(50_000_000, "largest accepted image, in pixels", ge=1)
    # 0.9: the ranker's score is a calibrated probability (ml/calibration.py), so a matching
    # description, direct evidence of what the photo shows, must be able to lift a photo above any
    # content score.
    description_weight: float = _setting(0.9,
                                         "how far a better-matching description pulls a photo's score up (0 = image only)",
                                         ge=0.0, le=1.0)
    near_duplicate_distance: float = _setting(0.02,
                                              "cosine distance of 16x16 fingerprints under which an upload is a near duplicate",
                                              ge=0.0, le=2.0)
    content_rule: bool = _setting(True,
                                  "withhold photos of children and texts about them (the notice instead); "
                                  "false only where the law does not apply")
    replica_urls: str = _setting("",
                                 "comma-separated URLs of streaming read replicas for searches, similar photos and photo "
                                 "details; empty = every read goes to the primary")
    max_replica_lag_s: float = _setting(5.0,
                                        "a replica further behind the primary than this is skipped until it catches up",
                                        ge=0.0)
    orphan_grace_seconds: float = _setting(3600.0,
                                           "store files no photo row points at are deleted by the next ingest once older than this",
                                           ge=0.0)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        import ipaddress

        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError: named by load_settings
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return Path(value).resolve()

    @property
    def uses_fixture_dataset(self) -> bool:
        return bool(self.dataset) and Path(self.dataset).resolve() == FIXTURE_DATASET.resolve()

    @property
    def replica_url_list(self) -> list[str]:
        return [url.strip() for url in self.replica_urls.split(",") if url.strip()]

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
    def onnx_path(self) -> Path:
        """Exported networks, named by their weights package and version (``ml.onnx_encoders``)."""
        return Path(self.onnx_dir).resolve() if self.onnx_dir else self.data_dir / "onnx"

    @property
    def new_library_precision(self) -> str:
        """The image precision of a library that has no ranker and no image vectors yet: int8 where
        it runs and pays, on ONNX Runtime with a VNNI CPU (grouped CV ranks it as well as fp32:
        docs/scaling.md, "Ingestion throughput"); fp32 elsewhere, where int8 ran little or no
        faster and approximates fp32 less closely."""
        from ml.onnx_encoders import cpu_has_vnni

        onnx = self.encoder == "minilm" and self.encoder_runtime == "onnx"
        return "int8" if onnx and cpu_has_vnni() else "fp32"

    @property
    def encoder_key(self) -> str:
        """Names the encoder pair; vectors are stored under it so different encoders never mix."""
        if self.encoder != "clip" and not self.image_precision:
            # Empty means "the library's own", which only the library knows: a key guessed here
            # would store or serve vectors under the other precision's key.
            raise RuntimeError("the image precision is not decided yet: "
                               "service.store.library_precision.library_settings decides it for a library")
        return self.encoder_key_at(self.image_precision)

    def encoder_key_at(self, precision: str) -> str:
        """The encoder key these settings would have with image precision ``precision``."""
        if self.encoder == "clip":
            return f"clip:{Path(self.clip_path).resolve().name}" if self.clip_path else "clip"
        return f"{self.encoder}+{self.image_model}" + ("" if precision == "fp32" else f"+{precision}")

    @property
    def served_query_precision(self) -> str:
        """``query_precision`` where it applies (MiniLM on ONNX Runtime), else fp32."""
        return self.query_precision if self.encoder == "minilm" and self.encoder_runtime == "onnx" else "fp32"

    def with_overrides(self, overrides: dict) -> Settings:
        return load_settings(**{**self.model_dump(), **overrides})


def env_names() -> dict[str, str]:
    """Field name -> environment variable, for docs and tests."""
    return {name: field.validation_alias.choices[0] if field.validation_alias else ENV_PREFIX + name.upper()
            for name, field in Settings.model_fields.items()}


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
