"""With Sense: photo search by description. ``create_app`` builds the Flask app (the factory pattern)."""
from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter

from service.config import Settings, load_settings


class BigintConverter(IntegerConverter):
    """``<int:...>`` in routes: ids are PostgreSQL bigints, so a larger number matches no route (404).

    An id has one spelling: ASCII digits without leading zeros. werkzeug's ``\\d+`` also matches
    other scripts' digits (``/api/photos/１``, a fullwidth one, was photo 1) and ``/api/photos/01``
    was photo 1 too. Ids start at 1, so ``0`` is no id either."""

    regex = r"[1-9][0-9]*"

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


def create_app(overrides: dict | None = None, *, settings: Settings | None = None) -> Flask:
    """Build an app with ``settings`` when given (`withsense serve` hands over the ones it runs with),
    else settings from the environment; then ``overrides`` (tests pass theirs here)."""
    if settings is None:
        settings = load_settings(**(overrides or {}))
    elif overrides:
        settings = settings.with_overrides(overrides)
    app = Flask(__name__)
    app.json.sort_keys = False
    app.url_map.converters["int"] = BigintConverter

    from service.api.accounts import bp as accounts_bp
    from service.api.audit import bp as audit_bp
    from service.api.health import bp as health_bp
    from service.api.photos import bp as photos_bp
    from service.api.ratings import bp as ratings_bp
    from service.api.search import bp as search_bp
    from service.http import body_limit, contract, db_session, errors, headers, metrics, ratelimit
    from service.web import i18n
    from service.web.views import bp as web_bp

    app.config["WITHSENSE"] = settings
    db_session.init_app(app, settings)
    # The library's image precision (service/store/library_precision.py), before anything reads the
    # encoder key; first of the request hooks, so a database that was away at start is asked again.
    from service.runtime import decide_early

    decide_early(app)
    app.before_request(decide_early)
    headers.init_app(app, behind_tls=settings.behind_tls)  # on every response, errors included
    i18n.init_app(app)  # the page's language (the API stays English)
    errors.init_app(app)
    # The upload limit, plus room for the multipart framing and the form's text fields.
    body_limit.init_app(app, settings.max_upload_mb * 1024 * 1024 + 64 * 1024)
    metrics.init_app(app)
    ratelimit.init_app(app, settings)  # shared search, write and wrong-key limits (PostgreSQL)
    app.register_blueprint(search_bp)
    app.register_blueprint(photos_bp)
    app.register_blueprint(ratings_bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(web_bp)
    contract.init_app(app)  # after the blueprints: the OpenAPI document lists every route
    return app

