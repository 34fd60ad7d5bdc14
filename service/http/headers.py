"""Security headers on every response: the page, the JSON API, images, errors and probes alike.

A few lines in an ``after_request`` hook rather than flask-talisman or ``secure``: the service needs
one fixed policy and HSTS behind a switch, and talisman would also redirect to HTTPS and add
per-request script nonces, neither of which applies (TLS ends at the proxy, docs/deploy.md, and the
page has no inline script to allow).

- ``Content-Security-Policy``: scripts, styles and connections only from the service itself, no
  ``unsafe-inline`` anywhere (the page's strings come as a ``<script type="application/json">`` data
  block, which is not run; app.js sets widths through ``element.style``, which style-src allows,
  never a ``style=`` attribute), images from the service and ``data:`` (the empty favicon), no
  plugins, no ``<base>``, forms posting only here, and no framing (``frame-ancestors 'none'``, with
  ``X-Frame-Options: DENY`` for browsers that predate it).
- ``X-Content-Type-Options: nosniff``: an upload served as ``image/jpeg`` is never run as anything else.
- ``Referrer-Policy: same-origin``: a search in the address bar does not leave with a click away.
- ``Strict-Transport-Security`` only with ``WITHSENSE_BEHIND_TLS``: sent over plain HTTP from a
  development machine it would pin ``localhost`` to HTTPS for a year.
"""
from __future__ import annotations

from flask import Flask

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


def init_app(app: Flask, *, behind_tls: bool) -> None:
    headers = {**HEADERS, **({"Strict-Transport-Security": HSTS} if behind_tls else {})}

    def add_headers(response):
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    app.after_request(add_headers)
