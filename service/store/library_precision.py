"""The image precision a library runs with (WITHSENSE_IMAGE_PRECISION): the one it was built with.

fp32 and int8 image networks give other vectors. They are stored under other encoder keys
(``Settings.encoder_key``), and a ranker reads the vectors of one key. A library that switched
precision would ingest vectors that its ranker never reads, and would serve no model. So:

- the library's precision is that of its active ranker; before it has one, that of its stored image
  vectors; a library with neither is new and takes ``Settings.new_library_precision`` (int8);
- WITHSENSE_IMAGE_PRECISION left empty means the library's precision;
- a value that differs from the library's is refused, with ``ModelMismatch``, as vectors of other
  package versions are (``check_package_versions``).

Every entry point that opens a library calls ``library_settings``: the CLI's commands, `withsense
serve` before it forks, gunicorn's configuration file, and each web worker's app
(``service.runtime.app_settings``).
"""
from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from service.config import Settings
from service.store.db import make_engine, resolve_url
from service.store.model_rows import ModelMismatch

PRECISIONS = ("fp32", "int8")

# Per precision's encoder key: an active ranker, or image vectors stored by one of its encoders
# (the image networks', and the fingerprints' of the precision that registered them first).
EVIDENCE_SQL = text(
    """
    SELECT m.encoder_key, bool_or(m.kind = 'ranker') AS ranker
    FROM models m
    WHERE m.encoder_key = ANY(:keys)
      AND ((m.kind = 'ranker' AND m.active)
           OR (m.kind = 'encoder' AND EXISTS (SELECT 1 FROM photo_embeddings e WHERE e.model_id = m.id)))
    GROUP BY m.encoder_key
    """
)


def library_precisions(engine: Engine, settings: Settings) -> tuple[list[str], str]:
    """The precisions this library was built with, from its active rankers, else from its stored
    image vectors, and which of the two told; none for a new library (or one not migrated yet)."""
    keys = {settings.encoder_key_at(p): p for p in PRECISIONS}
    try:
        with engine.connect() as conn:
            rows = conn.execute(EVIDENCE_SQL, {"keys": list(keys)}).all()
    except ProgrammingError:  # no models table: `withsense migrate` has not run, nothing is stored
        return [], ""
    ranked = sorted(keys[r.encoder_key] for r in rows if r.ranker)
    if ranked:
        return ranked, "its active ranker"
    return sorted(keys[r.encoder_key] for r in rows), "its stored image vectors"


def library_settings(engine: Engine, settings: Settings) -> Settings:
    """``settings`` with the image precision this library runs with; ``ModelMismatch`` when
    WITHSENSE_IMAGE_PRECISION names another one than the library was built with."""
    if settings.encoder != "minilm":  # only the minilm backend's image networks have an int8 copy
        return settings if settings.image_precision else settings.with_overrides({"image_precision": "fp32"})
    built, source = library_precisions(engine, settings)
    asked = settings.image_precision
    if not built:
        return settings if asked else settings.with_overrides({"image_precision": settings.new_library_precision})
    if asked and asked not in built:
        raise ModelMismatch(
            f"WITHSENSE_IMAGE_PRECISION={asked}, but this library was built with {built[0]} image networks "
            f"({source}): {asked} vectors would be stored apart and no ranker would read them. Unset "
            f"WITHSENSE_IMAGE_PRECISION (a library keeps the precision it was built with) or set it to {built[0]}; "
            f"for an {asked} library, ingest and train anew in a fresh database (another WITHSENSE_DATA_DIR or "
            "DATABASE_URL)"
        )
    if not asked and len(built) > 1:
        raise ModelMismatch(f"this library has {source} for each image precision ({' and '.join(built)}): "
                            "set WITHSENSE_IMAGE_PRECISION to the one to run")
    return settings if asked else settings.with_overrides({"image_precision": built[0]})


def resolved_settings(settings: Settings) -> Settings:
    """``library_settings`` for a process that holds no engine yet (gunicorn's configuration file,
    `withsense serve` before it forks, the benchmarks): one is opened for the question and closed.
    A database that does not answer yet leaves ``settings`` as they are: a server starts anyway, and
    its web workers decide once it answers (``service.runtime.app_settings``)."""
    engine = make_engine(resolve_url(settings))
    try:
        return library_settings(engine, settings)
    except OperationalError:
        return settings
    finally:
        engine.dispose()
