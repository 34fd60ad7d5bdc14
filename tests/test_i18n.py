"""The web page's languages (service/web/i18n.py): the catalogue is complete and compiled, plurals
are right, the language is chosen and kept, and the API stays English. No browser here
(tests/test_browser.py drives the page in both languages)."""
from __future__ import annotations

import io
import json
import re

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from sqlalchemy import text

from service.config import REPO_ROOT
from service.policy import NOTICE

TRANSLATIONS = REPO_ROOT / "service" / "translations"
RU_PO = TRANSLATIONS / "ru" / "LC_MESSAGES" / "messages.po"
RU_MO = RU_PO.with_suffix(".mo")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
# n -> the Russian form of "фотография" after it
PHOTO_FORMS = {1: "фотография", 2: "фотографии", 5: "фотографий", 21: "фотография", 22: "фотографии",
               25: "фотографий", 11: "фотографий", 12: "фотографий", 14: "фотографий", 104: "фотографии"}
ONLY_PHOTOS = ("Only %(num)d photo can be searched.", "Only %(num)d photos can be searched.")


def source_messages() -> dict[tuple[str, str | None], tuple[str, ...]]:
    """Every message in the templates, the web views and app.js, extracted now as `make messages`
    does (babel.cfg): (msgid, context) -> (msgid,) or (singular, plural)."""
    with (REPO_ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    found = {}
    for _file, _line, message, _comments, context in extract_from_dir(str(REPO_ROOT), method_map, options_map):
        ids = message if isinstance(message, tuple) else (message,)
        found[(ids[0], context)] = ids
    return found


@pytest.fixture(scope="module")
def ru_catalog():
    with RU_PO.open("rb") as f:
        return read_po(f, locale="ru")


@pytest.fixture(scope="module")
def page_app(tmp_path_factory):
    """The app for pages that read nothing from the database (search and upload)."""
    from service import create_app

    app = create_app({"database_url": "postgresql+psycopg://nobody@127.0.0.1:9/none",
                      "data_dir": str(tmp_path_factory.mktemp("data"))})
    app.config["TESTING"] = True
    return app


def test_every_message_of_the_page_has_a_russian_translation(ru_catalog):
    sources = source_messages()
    assert len(sources) > 80  # the extraction found the templates, the views and app.js
    assert ("This image is unavailable in your country in compliance with local laws", None) in sources
    problems = []
    for (msgid, context), ids in sources.items():
        entry = ru_catalog.get(ids[0] if len(ids) == 1 else ids, context=context)
        if entry is None:
            problems.append(f"missing: {msgid!r}")
            continue
        forms = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if entry.fuzzy:
            problems.append(f"fuzzy: {msgid!r}")
        if len(ids) == 2 and len(forms) != 3:
            problems.append(f"not 3 plural forms: {msgid!r}")
        if not all(forms):
            problems.append(f"empty: {msgid!r}")
        for form in forms:  # the same placeholders, or formatting fails (a plural form may leave out %(num)d)
            if not set(PLACEHOLDER.findall(form)) <= set(PLACEHOLDER.findall(" ".join(ids))):
                problems.append(f"unknown placeholder in {form!r}")
            if len(ids) == 1 and set(PLACEHOLDER.findall(form)) != set(PLACEHOLDER.findall(msgid)):
                problems.append(f"placeholders differ: {msgid!r} -> {form!r}")
    assert not ru_catalog.fuzzy and problems == [], "run `make messages` and translate:\n" + "\n".join(problems)


def test_the_compiled_catalogue_is_up_to_date(ru_catalog):
    compiled = io.BytesIO()
    write_mo(compiled, ru_catalog)  # what `pybabel compile` writes
    assert RU_MO.read_bytes() == compiled.getvalue(), "service/translations: run `make messages` (pybabel compile)"


def test_russian_plurals_have_three_forms(page_app):
    from flask_babel import ngettext

    assert set(PHOTO_FORMS) >= {1, 2, 5, 21, 22, 25, 11, 12}
    with page_app.test_request_context("/", headers={"Accept-Language": "ru"}):
        for n, word in PHOTO_FORMS.items():
            assert ngettext(*ONLY_PHOTOS, n) == f"Всего в поиске {n} {word}."
    with page_app.test_request_context("/", headers={"Accept-Language": "en"}):
        assert [ngettext(*ONLY_PHOTOS, n) for n in (1, 2, 21)] == [
            "Only 1 photo can be searched.", "Only 2 photos can be searched.", "Only 21 photos can be searched."]


def page_text(html: str) -> dict:
    """The strings the server gave app.js (the #page-text data block)."""
    block = re.search(r'<script type="application/json" id="page-text">(.*?)</script>', html, re.S)
    return json.loads(block.group(1))


@pytest.mark.parametrize("accept, lang", [
    ("ru", "ru"), ("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", "ru"), ("en", "en"), ("en-GB,en;q=0.9", "en"),
    ("de-DE,de;q=0.9", "en"), ("", "en"), ("uk, ru;q=0.8, en;q=0.5", "ru"),
])
def test_the_language_comes_from_accept_language(page_app, accept, lang):
    client = page_app.test_client()
    r = client.get("/", headers={"Accept-Language": accept} if accept else {})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and f'<html lang="{lang}">' in html
    assert {"Accept-Language", "Cookie"} <= set(r.headers["Vary"].replace(" ", "").split(","))
    assert page_text(html)["lang"] == lang
    if lang == "ru":
        assert "Опишите, что должно быть на фото" in html and ">Найти</button>" in html
        assert "Describe a scene" not in html
    else:
        assert "Describe a scene" in html and ">Search</button>" in html and "Найти" not in html


def test_the_switch_sticks_in_a_cookie(page_app):
    client = page_app.test_client()
    r = client.get("/upload?lang=ru", headers={"Accept-Language": "en"})
    assert '<html lang="ru">' in r.get_data(as_text=True)
    assert "withsense_lang=ru" in r.headers["Set-Cookie"] and "SameSite=Lax" in r.headers["Set-Cookie"]
    # later pages, without ?lang=, stay Russian for an English browser
    for path in ["/", "/upload"]:
        assert '<html lang="ru">' in client.get(path, headers={"Accept-Language": "en"}).get_data(as_text=True)
    r = client.get("/?lang=en", headers={"Accept-Language": "ru"})
    assert '<html lang="en">' in r.get_data(as_text=True) and "withsense_lang=en" in r.headers["Set-Cookie"]
    assert '<html lang="en">' in client.get("/", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    # an unknown language is ignored, and sets nothing
    r = client.get("/?lang=xx", headers={"Accept-Language": "ru"})
    assert '<html lang="en">' in r.get_data(as_text=True) and "Set-Cookie" not in r.headers


def test_the_switch_names_each_language_in_itself(page_app):
    html = page_app.test_client().get("/", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert re.search(r'<a href="\?lang=en" lang="en"[^>]*>English</a>', html)
    assert re.search(r'<a href="\?lang=ru" lang="ru"[^>]*aria-current="true"[^>]*>Русский</a>', html)


def test_templates_use_plural_forms(page_app):
    html = page_app.test_client().get("/upload", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "(до 500 символов)" in html and "Загрузить фотографию" in html
    html = page_app.test_client().get("/upload", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "(up to 500 characters)" in html


def test_app_js_gets_every_string_it_uses_with_russian_plural_categories(page_app):
    from service.web.i18n import js_messages

    html = page_app.test_client().get("/", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    messages = page_text(html)["messages"]
    assert set(messages) == {m[0] if isinstance(m, tuple) else m for m in js_messages()}
    # one form per CLDR category that integers take in Russian; app.js picks with Intl.PluralRules
    assert messages[ONLY_PHOTOS[0]] == {"one": "Всего в поиске %(num)d фотография.",
                                         "few": "Всего в поиске %(num)d фотографии.",
                                         "many": "Всего в поиске %(num)d фотографий."}
    assert messages[NOTICE] == "Это изображение недоступно в вашей стране в соответствии с местным законодательством"
    english = page_text(page_app.test_client().get("/", headers={"Accept-Language": "en"}).get_data(as_text=True))
    assert english["messages"][ONLY_PHOTOS[0]] == {"one": ONLY_PHOTOS[0], "other": ONLY_PHOTOS[1]}
    assert english["messages"][NOTICE] == NOTICE


def test_the_data_block_cannot_end_its_script_element(page_app):
    from service.web.i18n import _page_text

    class Echo:  # a catalogue whose "translation" tries to close the <script>
        def gettext(self, msgid):
            return "</script><script>alert(1)</script> & 'x'"

        def ngettext(self, singular, plural, n):
            return self.gettext(singular)

    with page_app.test_request_context("/", headers={"Accept-Language": "en"}):
        block = _page_text("en", Echo())
    assert "<" not in block and ">" not in block and "&" not in block and "'" not in block
    assert json.loads(block)["messages"][NOTICE] == "</script><script>alert(1)</script> & 'x'"


def test_the_api_stays_english_whatever_the_page_language(client):
    for headers in ({"Accept-Language": "ru"}, {"Cookie": "withsense_lang=ru"}):
        r = client.post("/api/search?lang=ru", json={"query": "two boys playing"}, headers=headers)
        assert r.json["notice"] == NOTICE and "Set-Cookie" not in r.headers
        r = client.get("/api/photos/999999", headers=headers)
        assert r.status_code == 404 and re.fullmatch(r"[ -~]+", r.json["error"])  # plain English ASCII


def test_the_photo_page_speaks_the_page_language(client, loaded):
    with loaded["engine"].connect() as conn:
        marked = conn.scalar(text("SELECT id FROM photos WHERE shows_child ORDER BY id LIMIT 1"))
    ru = client.get(f"/photos/{marked}", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    ru = re.sub(r'<script type="application/json".*?</script>', "", ru, flags=re.S)  # app.js's msgids
    assert '<html lang="ru">' in ru and "в соответствии с местным законодательством" in ru and NOTICE not in ru
    assert f"<h1>Фото {marked}</h1>" in ru
    en = client.get(f"/photos/{marked}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert NOTICE in en and f"<h1>Photo {marked}</h1>" in en
    r = client.get("/photos/999999", headers={"Accept-Language": "ru"})
    assert r.status_code == 404 and "Фотографии с номером 999999 нет." in r.get_data(as_text=True)
