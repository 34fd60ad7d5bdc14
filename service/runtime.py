"""Per-process objects that are expensive to build: encoders and the searcher, made once per worker,
and the background thread that makes uploaded photos searchable."""
from __future__ import annotations

import threading

from flask import Flask, current_app

from ml.encoders import EncoderPair, load_encoders
from service.config import Settings
from service.ingest.embedding_worker import EmbeddingWorker
from service.search.searcher import Searcher

_worker_lock = threading.Lock()


def encoders_for(settings: Settings) -> EncoderPair:
    return load_encoders(settings.encoder, image_model=settings.image_model, clip_path=settings.clip_path,
                         runtime=settings.encoder_runtime, onnx_dir=settings.onnx_path,
                         image_precision=settings.image_precision)


def export_models(settings: Settings) -> list:
    """Make sure the configured networks are exported to ONNX (in a child process when missing)."""
    if settings.encoder != "minilm" or settings.encoder_runtime != "onnx":
        return []
    from ml.encoders import image_networks
    from ml.onnx_encoders import TEXT_NETWORK, USE_NETWORK, ensure_exported

    paths = ensure_exported(settings.onnx_path, [TEXT_NETWORK, USE_NETWORK, *image_networks(settings.image_model)])
    if settings.image_precision != "fp32":
        paths += ensure_exported(settings.onnx_path, image_networks(settings.image_model), settings.image_precision)
    return paths


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


def embedding_worker(app: Flask | None = None) -> EmbeddingWorker:
    """This process's embedding worker thread, started on first use (an upload, or ``warm_up``)."""
    app = app or current_app
    with _worker_lock:
        worker = app.extensions.get("withsense.embedding_worker")
        if worker is None or not worker.is_alive():
            worker = EmbeddingWorker(app.extensions["withsense.engine"], app.config["WITHSENSE"], get_encoders(app).image)
            worker.start()
            app.extensions["withsense.embedding_worker"] = worker
    return worker


def stop_embedding_worker(app: Flask) -> None:
    worker = app.extensions.pop("withsense.embedding_worker", None)
    if worker is not None:
        worker.stop()


def warm_up(app: Flask) -> None:
    """Load models and run one search-sized encoding, so the first real search is as fast as any."""
    with app.app_context():
        searcher = get_searcher(app)
        searcher.text_encoder.encode(["warm up"])
        if searcher.multilingual is not None:  # USE's network and the language models (lingua: ~5 s)
            searcher.multilingual.encode(["warm up"])
            searcher.router.load()
        try:
            searcher.active_state()  # reads the active ranker's row and loads it into the cache
        except Exception:  # noqa: BLE001 - no model (or no database) yet: the first search will say so
            searcher.models.invalidate()
        # The upload path's networks too, at the largest batch the worker thread runs: sessions are
        # made on first use and ONNX Runtime's arena keeps the memory of the largest batch, so doing
        # both here makes a worker's memory reach its plateau before it serves, not mid-traffic.
        from PIL import Image

        from service.ingest.embedding_worker import SERVER_BATCH

        get_encoders(app).image.encode([Image.new("RGB", (64, 64))] * SERVER_BATCH)
    # Jobs queued while no server ran (or left by a crash) are taken up without waiting for an upload.
    embedding_worker(app)


def shut_down(app: Flask) -> None:
    """Before a worker exits: write what the searcher still holds (queued search-log lines)."""
    searcher = app.extensions.get("withsense.searcher") if app is not None else None
    if searcher is not None:
        searcher.close()
