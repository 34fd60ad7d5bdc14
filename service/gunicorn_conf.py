"""gunicorn's configuration file for the `gunicorn` command (the Docker image's CMD:
`gunicorn -c service/gunicorn_conf.py`): the settings read once, here, from the environment, and the
server's options from service/server.py. `withsense serve` runs the same options without this file.
"""
from service.config import load_settings
from service.server import gunicorn_options

globals().update(gunicorn_options(load_settings()))
# The app each worker builds: `create_app()` reads the same environment in the worker.
wsgi_app = "service:create_app()"
