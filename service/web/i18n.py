"""The web page's language: English or Russian, chosen per request, with Flask-Babel.

The language is, in order: ``?lang=`` on the URL (the switch in the page header: it also sets a
cookie, so the choice sticks), the cookie, the browser's ``Accept-Language``, English. Only the
page is translated: the JSON API answers in English whatever the request says.

Catalogues: ``service/translations/<lang>/LC_MESSAGES/messages.po``, compiled to ``.mo`` and
committed (``make messages`` extracts, updates and compiles; tests/test_i18n.py fails when a
``.mo`` is stale or a message lacks its translation). English is the msgids themselves.

static/app.js needs translated text too. It calls ``_("...")`` and ``ngettext("...", "...", n)``;
this module extracts those calls from app.js with Babel's own JavaScript extractor (the one
``pybabel extract`` runs) and renders their translations into every page as a JSON data block
(``<script type="application/json" id="page-text">``: data, not code, so a CSP without inline
scripts allows it). A plural message comes with one form per CLDR plural category of the language
("one", "few", "many"...), which app.js picks with the browser's ``Intl.PluralRules``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from babel.messages.extract import extract
from flask import Flask, Response, request
from flask_babel import Babel, get_locale, get_translations

LANGUAGES = {"en": "English", "ru": "Русский"}  # code -> the language's name in itself, for the switch
DEFAULT = "en"
COOKIE = "withsense_lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
APP_JS = Path(__file__).resolve().parents[1] / "static" / "app.js"


def select_locale() -> str:
    chosen = request.args.get("lang")
    if chosen in LANGUAGES:
        return chosen
    kept = request.cookies.get(COOKIE)
    if kept in LANGUAGES:
        return kept
    return request.accept_languages.best_match(list(LANGUAGES)) or DEFAULT


def remember_choice(response: Response) -> Response:
    """After a page: keep a ``?lang=`` choice in the cookie; tell caches the page varies by language."""
    chosen = request.args.get("lang")
    if chosen in LANGUAGES and request.cookies.get(COOKIE) != chosen:
        response.set_cookie(COOKIE, chosen, max_age=COOKIE_MAX_AGE, samesite="Lax", httponly=True,
                            secure=request.is_secure)
    response.vary.update(("Accept-Language", "Cookie"))
    return response


@functools.cache
def js_messages() -> tuple[str | tuple[str, str], ...]:
    """Every message app.js translates: a msgid, or (singular, plural) for ngettext."""
    with APP_JS.open("rb") as f:
        found = [message for _line, message, _comments, _context in extract("javascript", f)]
    return tuple(dict.fromkeys(found))


@functools.cache
def _page_text(lang: str, translations) -> str:
    # translations: Flask-Babel's catalogue object for ``lang`` (one per locale, cached by it).
    plural_form = get_locale().plural_form
    # One integer per CLDR category the language uses for integers (Russian: 1 one, 2 few, 0 many).
    samples = {}
    for n in range(200):
        samples.setdefault(plural_form(n), n)
    messages = {}
    for message in js_messages():
        if isinstance(message, tuple):
            singular, plural = message[:2]
            messages[singular] = {tag: translations.ngettext(singular, plural, n) for tag, n in samples.items()}
        else:
            messages[message] = translations.gettext(message)
    # JSON that cannot end the <script> element it sits in (as Jinja's tojson escapes), Cyrillic as itself.
    text = json.dumps({"lang": lang, "messages": messages}, ensure_ascii=False)
    return text.translate({ord(c): f"\\u{ord(c):04x}" for c in "<>&'"})


def page_text() -> str:
    """The translated strings app.js uses, in this request's language: JSON for the page (``|safe``)."""
    return _page_text(str(get_locale()), get_translations())


def _template_globals() -> dict:
    return {"page_lang": str(get_locale()), "languages": LANGUAGES, "page_text": page_text}


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, default_locale=DEFAULT)
    app.context_processor(_template_globals)
