"""Per-process objects that are expensive to build: encoders and the searcher, made once per worker.

A web worker runs the text side only (MiniLM, USE, the language router). Uploaded photos get their
image vectors in a process of their own, `withsense worker` (service/ingest/embedding_worker.py),
which `withsense serve` supervises (service/processes.py): the image networks are never loaded here
unless a search by an uploaded image asks for them (``POST /search/similar`` with a file).
"""
from __future__ import annotations

import threading

from flask import Flask, current_app
from sqlalchemy.exc import OperationalError

from ml.encoders import EncoderPair, load_encoders
from service.config import Settings
from service.search.searcher import Searcher
from service.store.library_precision import library_settings


def encoders_for(settings: Settings) -> EncoderPair:
    return load_encoders(settings.encoder, image_model=settings.image_model, clip_path=settings.clip_path,
                         runtime=settings.encoder_runtime, onnx_dir=settings.onnx_path,
                         image_precision=settings.image_precision, query_precision=settings.served_query_precision)


def export_models(settings: Settings) -> list:
    """Make sure the configured networks are exported to ONNX (in a child process when missing): the
    image networks' int8 copies too unless the precision is fp32 (empty: a new library's is int8),
    and MiniLM's unless the query precision is fp32."""
    if settings.encoder != "minilm" or settings.encoder_runtime != "onnx":
        return []
    from ml.encoders import image_networks
    from ml.onnx_encoders import TEXT_NETWORK, USE_NETWORK, ensure_exported

    paths = ensure_exported(settings.onnx_path, [TEXT_NETWORK, USE_NETWORK, *image_networks(settings.image_model)])
    if settings.image_precision != "fp32":
        paths += ensure_exported(settings.onnx_path, image_networks(settings.image_model), "int8")
    if settings.served_query_precision != "fp32":
        paths += ensure_exported(settings.onnx_path, [TEXT_NETWORK], settings.served_query_precision)
    return paths


def app_settings(app: Flask | None = None) -> Settings:
    """The app's settings with the library's image precision decided (service/store/library_precision.py),
    once; until the database answers, its error is raised (each request tries again: ``decide_early``)."""
    app = app or current_app
    if not app.extensions.get("withsense.precision_decided"):
        app.config["WITHSENSE"] = library_settings(app.extensions["withsense.engine"], app.config["WITHSENSE"])
        app.extensions["withsense.precision_decided"] = True
    return app.config["WITHSENSE"]


def decide_early(app: Flask | None = None) -> None:
    """``app_settings`` at start and before each request until it succeeds; a database that does not
    answer yet fails only the requests that need it (readiness says so), as it did before."""
    try:
        app_settings(app)
    except OperationalError:
        pass


def get_searcher(app: Flask | None = None) -> Searcher:
    app = app or current_app
    searcher = app.extensions.get("withsense.searcher")
    if searcher is None:
        settings = app_settings(app)
        encoders = get_encoders(app)
        # Queries at WITHSENSE_QUERY_PRECISION; descriptions added here use ``encoders.text`` (fp32).
        # Decided by the settings, not by which encoders the pair holds: an app may be handed a pair
        # built for other settings (the tests share one across apps).
        queries = encoders.text if settings.served_query_precision == "fp32" else encoders.query_text
        searcher = Searcher(app.extensions["withsense.engine"], settings, queries,
                            replicas=app.extensions.get("withsense.replicas"), multilingual=encoders.multilingual,
                            shortlist_engine=app.extensions["withsense.autocommit_engine"])
        app.extensions["withsense.searcher"] = searcher
    return searcher


def get_encoders(app: Flask | None = None) -> EncoderPair:
    app = app or current_app
    encoders = app.extensions.get("withsense.encoders")
    if encoders is None:
        encoders = encoders_for(app_settings(app))
        app.extensions["withsense.encoders"] = encoders
    return encoders


def descriptions_written(app: Flask | None = None) -> None:
    """A description was stored by this process: its searches read the libraries' languages again at
    once (an English query matches descriptions in other languages in USE's space only where there
    are some, ``Searcher.shape``); other processes see it within WITHSENSE_MODEL_REFRESH_SECONDS."""
    searcher = (app or current_app).extensions.get("withsense.searcher")
    if searcher is not None:
        searcher.models.invalidate()


WARM_UP_QUERY = "a dog runs on the grass"


def warm_up(app: Flask) -> None:
    """Load models and run one search-sized encoding, so the first real search is as fast as any."""
    with app.app_context():
        try:
            app_settings(app)
        except OperationalError:  # no database yet: the first search decides and loads
            return
        searcher = get_searcher(app)
        # USE serves queries in other languages (and English ones where some description is in
        # another language): it opens in a thread of its own that the worker does not wait for, since
        # ONNX Runtime lets go of the GIL while it builds a session. A first search that needs USE
        # before then waits for the same session (the encoder's cached_property, which Python 3.11
        # locks), never builds a second.
        if searcher.multilingual is not None:
            threading.Thread(target=searcher.multilingual.encode, args=(["warm up"],), name="use-warm-up",
                             daemon=True).start()
        # lingua's low-accuracy models (~0.2 s; ml/language.py) and the word-frequency tables of its
        # second opinion (0.15-0.4 s of Python, ~7 MB) load while MiniLM's session opens: ONNX Runtime
        # lets go of the GIL, so on two cores the two overlap.
        languages = threading.Thread(target=searcher.router.load, name="lingua-warm-up")
        languages.start()
        searcher.text_encoder.encode(["warm up"])
        languages.join()
        try:
            searcher.active_state()  # reads the active ranker's row and loads it into the cache
        except Exception:  # noqa: BLE001 - no model (or no database) yet: the first search will say so
            searcher.models.invalidate()
            return
        # One search, not logged: the first statement on a connection, SQLAlchemy's compiled
        # statements and the rows' pages cost the first user ~0.2 s otherwise. Plainly English:
        # "warm up" read as another language would have asked the second opinion for nothing.
        searcher.search(WARM_UP_QUERY, log=False)


def shut_down(app: Flask) -> None:
    """Before a worker exits: write what the searcher still holds (queued search-log lines)."""
    searcher = app.extensions.get("withsense.searcher") if app is not None else None
    if searcher is not None:
        searcher.close()
