"""gunicorn's configuration file for the `gunicorn` command (the Docker image's CMD:
`gunicorn -c service/gunicorn_conf.py`): the settings read once, here, from the environment, and the
server's options from service/server.py. `withsense serve` runs the same options without this file.
"""
from service.config import load_settings
from service.server import gunicorn_options
from service.store.library_precision import resolved_settings
from service.store.model_rows import ModelMismatch

_settings = load_settings()
# An explicit WITHSENSE_IMAGE_PRECISION other than the library's stops the server here, once, with
# what to do (service/store/library_precision.py); the workers' create_app() decides an empty one.
try:
    resolved_settings(_settings)
except ModelMismatch as exc:
    raise SystemExit(str(exc)) from None
globals().update(gunicorn_options(_settings))
# The app each worker builds: `create_app()` reads the same environment in the worker.
wsgi_app = "service:create_app()"
