"""gunicorn settings for `withsense serve`: print the URL once the server is up, warm each worker."""
import os

bind = os.environ.get("WITHSENSE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WITHSENSE_WORKERS", "2"))
timeout = 120
accesslog = "-"
wsgi_app = "service:create_app()"


def on_starting(server):
    # Import the heavy libraries once in the master: forked workers inherit them instead of each
    # spending seconds on the same imports (cold start). Nothing here opens a database connection.
    import sentence_transformers  # noqa: F401
    import torch  # noqa: F401


def when_ready(server):
    host, port = bind.rsplit(":", 1)
    print(f"With Sense is up: http://{host}:{port}/", flush=True)


def post_worker_init(worker):
    # One torch thread per worker: with one worker per core, more threads only fight each other
    # under concurrent load (and a single short query gains little from a second thread).
    import torch

    torch.set_num_threads(1)
    # Load the encoders and the active model now, so no user waits for the first search's imports.
    from service.runtime import warm_up

    warm_up(worker.wsgi)
