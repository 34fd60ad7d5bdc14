"""Bodies over the size limit: answer 413 at once, then read and discard what the client still sends.

Werkzeug refuses a body whose Content-Length is over ``MAX_CONTENT_LENGTH`` without reading it,
and the server then closes the connection. A client still sending its upload gets a broken pipe
and never sees the 413. So the 413 (JSON, from the one error handler) goes out first, and only
after it is written does the server read and throw away the rest of the body, up to
``DRAIN_FACTOR`` times the limit and with an idle timeout, before closing. A client that announced
a huge body and sends nothing still gets its answer at once.
"""
from __future__ import annotations

import logging

from flask import Flask, abort, after_this_request, request

log = logging.getLogger(__name__)

DRAIN_FACTOR = 4  # read at most this many times the upload limit after refusing a body
DRAIN_IDLE_S = 5.0  # give up on a client that stops sending for this long
CHUNK = 64 * 1024


def _drain(environ: dict, length: int) -> None:
    sock = environ.get("gunicorn.socket")
    if sock is not None:  # under gunicorn: a client that stalls must not hold the worker thread
        sock.settimeout(DRAIN_IDLE_S)
    stream = environ["wsgi.input"]
    left = length
    try:
        while left > 0:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
    except OSError as exc:  # the client went away or stalled: nothing more to do
        log.debug("stopped draining a refused body: %s", exc)


def _refuse_oversized_body(limit: int) -> None:
    length = request.content_length
    if length is None or length <= limit:
        return
    environ = request.environ

    @after_this_request
    def drain_after_answering(response):
        response.headers["Connection"] = "close"
        if length <= DRAIN_FACTOR * limit:
            response.call_on_close(lambda: _drain(environ, length))
        return response

    abort(413)


def init_app(app: Flask, limit_bytes: int) -> None:
    app.config["MAX_CONTENT_LENGTH"] = limit_bytes  # bodies without a Content-Length are cut while read
    app.before_request(lambda: _refuse_oversized_body(limit_bytes))
