"""gunicorn settings for `withsense serve`: print the URL once the server is up, warm each worker."""
import os

bind = os.environ.get("WITHSENSE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WITHSENSE_WORKERS", "2"))
timeout = 120
accesslog = "-"
wsgi_app = "service:create_app()"


def on_starting(server):
    # Export the networks to ONNX if this data directory has none yet (a child process: the server
    # never imports torch), then import the libraries the workers need once in the master: forked
    # workers inherit them instead of each spending seconds on the same imports (cold start). Not
    # onnxruntime: imported before a fork, it aborts the worker at exit (std::system_error).
    # Nothing here opens a database connection.
    from service.config import load_settings
    from service.runtime import export_models

    export_models(load_settings())
    import tokenizers  # noqa: F401

    import service.api.search  # noqa: F401 - the search path: numpy, scikit-learn, psycopg


def when_ready(server):
    host, port = bind.rsplit(":", 1)
    print(f"With Sense is up: http://{host}:{port}/", flush=True)


def post_worker_init(worker):
    # Load the encoders and the active model now, so no user waits for the first search's imports.
    from service.runtime import warm_up

    warm_up(worker.wsgi)
