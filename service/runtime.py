"""Per-process objects that are expensive to build: encoders and the searcher, made once per worker."""
from __future__ import annotations

from flask import Flask, current_app

from ml.encoders import EncoderPair, load_encoders
from service.config import Settings
from service.search.searcher import Searcher


def encoders_for(settings: Settings) -> EncoderPair:
    return load_encoders(settings.encoder, image_model=settings.image_model, clip_path=settings.clip_path)


def get_searcher(app: Flask | None = None) -> Searcher:
    app = app or current_app
    searcher = app.extensions.get("withsense.searcher")
    if searcher is None:
        settings = app.config["WITHSENSE"]
        encoders = get_encoders(app)
        searcher = Searcher(app.extensions["withsense.engine"], settings, encoders.text)
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
        try:
            searcher.active_state()  # reads the active ranker's row and loads it into the cache
        except Exception:  # noqa: BLE001 - no model (or no database) yet: the first search will say so
            searcher.models.invalidate()


def shut_down(app: Flask) -> None:
    """Before a worker exits: write what the searcher still holds (queued search-log lines)."""
    searcher = app.extensions.get("withsense.searcher") if app is not None else None
    if searcher is not None:
        searcher.close()
