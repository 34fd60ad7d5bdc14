"""Per-process objects that are expensive to build: encoders and the searcher, made once per worker.

A web worker runs the text side only (MiniLM, USE, the language router). Uploaded photos get their
image vectors in a process of their own, `withsense worker` (service/ingest/embedding_worker.py),
which `withsense serve` supervises (service/processes.py): the image networks are never loaded here
unless a search by an uploaded image asks for them (``POST /search/similar`` with a file).
"""
from __future__ import annotations

import threading

from flask import Flask, current_app

from ml.encoders import EncoderPair, load_encoders
from service.config import Settings
from service.search.searcher import Searcher


def encoders_for(settings: Settings) -> EncoderPair:
    return load_encoders(settings.encoder, image_model=settings.image_model, clip_path=settings.clip_path,
                         runtime=settings.encoder_runtime, onnx_dir=settings.onnx_path)


def export_models(settings: Settings) -> list:
    """Make sure the configured networks are exported to ONNX (in a child process when missing)."""
    if settings.encoder != "minilm" or settings.encoder_runtime != "onnx":
        return []
    from ml.encoders import image_networks
    from ml.onnx_encoders import TEXT_NETWORK, USE_NETWORK, ensure_exported

    return ensure_exported(settings.onnx_path, [TEXT_NETWORK, USE_NETWORK, *image_networks(settings.image_model)])


def get_searcher(app: Flask | None = None) -> Searcher:
    app = app or current_app
    searcher = app.extensions.get("withsense.searcher")
    if searcher is None:
        settings = app.config["WITHSENSE"]
        encoders = get_encoders(app)
        searcher = Searcher(app.extensions["withsense.engine"], settings, encoders.text,
                            replicas=app.extensions.get("withsense.replicas"), multilingual=encoders.multilingual)
        app.extensions["withsense.searcher"] = searcher
    return searcher


def get_encoders(app: Flask | None = None) -> EncoderPair:
    app = app or current_app
    encoders = app.extensions.get("withsense.encoders")
    if encoders is None:
        encoders = encoders_for(app.config["WITHSENSE"])
        app.extensions["withsense.encoders"] = encoders
    return encoders


def warm_up(app: Flask) -> None:
    """Load models and run one search-sized encoding, so the first real search is as fast as any."""
    with app.app_context():
        searcher = get_searcher(app)
        searcher.text_encoder.encode(["warm up"])
        searcher.router.load()  # lingua's low-accuracy models (~0.2 s; ml/language.py)
        try:
            searcher.active_state()  # reads the active ranker's row and loads it into the cache
        except Exception:  # noqa: BLE001 - no model (or no database) yet: the first search will say so
            searcher.models.invalidate()
    if searcher.multilingual is not None:
        # USE serves queries in other languages only: its network (~1 s to open, ONNX Runtime lets go
        # of the GIL meanwhile) opens in the background, so the worker takes its first search sooner.
        # A query that needs it before then waits for it (the session is a cached_property, which
        # Python 3.11 opens under a lock).
        threading.Thread(target=searcher.multilingual.encode, args=(["warm up"],), name="use-warm-up",
                         daemon=True).start()


def shut_down(app: Flask) -> None:
    """Before a worker exits: write what the searcher still holds (queued search-log lines)."""
    searcher = app.extensions.get("withsense.searcher") if app is not None else None
    if searcher is not None:
        searcher.close()
