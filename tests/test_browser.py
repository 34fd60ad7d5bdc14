"""The web page in a real headless Chromium, against the real server, database and models.

Chromium is Debian's (/usr/bin/chromium; CI installs it in .ci/run), driven by PyPI playwright.
Screenshots of the search and photo pages (desktop and phone width) go to reports/screens/.
The page's tests run in English and in Russian: the browser asks for its language by Accept-Language
(a context's locale), and each Russian screenshot is named like the English one plus "-ru".
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from service.config import REPO_ROOT
from service.policy import NOTICE

CHROMIUM = Path("/usr/bin/chromium")
SCREENS = REPO_ROOT / "reports" / "screens"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TOKEN = "test-token"  # conftest `loaded` sets api_token="test-token"
LOCALES = {"en": "en-US", "ru": "ru-RU"}  # the browser's language, sent as Accept-Language
# What the tests look for on the page, in each language (written out, not read from the catalogue).
TEXT = {
    "en": {"describe": "Describe a scene", "search": "Search", "previous": "Previous", "next": "Next",
           "match": "Match", "no_match": "No match", "description": "Description",
           "add_description": "Add description", "token": "API token", "sign_in": "Sign in", "sign_out": "Sign out",
           "signed_in_as": "Signed in as {name}", "photo": "Photo", "upload": "Upload",
           "notice": NOTICE, "no_descriptions": "No descriptions yet.", "token_word": "token",
           "weak": "No photo fits this description well; the closest ones:", "already_here": "This photo is already here:",
           "only_16": "Only 16 photos can be searched.", "photos_for": "Photos 1–5 for “{query}”."},
    "ru": {"describe": "Опишите, что должно быть на фото", "search": "Найти", "previous": "Назад", "next": "Дальше",
           "match": "Подходит", "no_match": "Не подходит", "description": "Описание",
           "add_description": "Добавить описание", "token": "API-токен", "sign_in": "Войти", "sign_out": "Выйти",
           "signed_in_as": "Вы вошли как {name}", "photo": "Фотография", "upload": "Загрузить",
           "notice": "Это изображение недоступно в вашей стране в соответствии с местным законодательством",
           "no_descriptions": "Описаний пока нет.", "token_word": "токен",
           "weak": "Под это описание хорошо не подходит ни одна фотография; вот самые близкие:",
           "already_here": "Эта фотография уже есть:",
           "only_16": "Всего в поиске 16 фотографий.", "photos_for": "Фотографии 1–5 по запросу «{query}»."},
}
both_languages = pytest.mark.parametrize("lang", list(LOCALES))

pytestmark = [pytest.mark.slow,  # drives a browser
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")]

# n result cards, each with its picture loaded or the content rule's notice in its place
RESULT_IMAGES_LOADED = """(n) => {
    const cards = [...document.querySelectorAll('#results .card')];
    return cards.length === n && cards.every(card => {
        const img = card.querySelector('img');
        return img ? img.complete && img.naturalWidth > 0 : card.querySelector('.notice-card') !== null;
    });
}"""
# every card has finished asking GET /api/photos/<id>: it lists descriptions or says why it can't
PHOTO_LOADED = "() => !document.querySelector('#photo-status.busy')"  # GET /api/photos/<id> answered
CARDS_SETTLED = """() => [...document.querySelectorAll('#results .card-descriptions')].every(ul => ul.children.length > 0)"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page_factory(browser, base_url):
    """A page factory over ``base_url``: each page in a fresh browser context (no cookies).
    Yields the factory, then fails the test if any page raised a JavaScript error or met the CSP."""
    contexts, errors = [], []

    def make(viewport=DESKTOP, lang="en"):
        context = browser.new_context(viewport=viewport, base_url=base_url, locale=LOCALES[lang])
        context.set_default_timeout(60_000)  # the first search on 2 shared cores can be slow
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # the CSP is on (service/http/headers.py): anything it blocks fails the test
        page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture()
def open_page(browser, live_server):
    """Pages over the read-only `loaded` library."""
    yield from _page_factory(browser, live_server)


@pytest.fixture()
def open_writable_page(browser, writable_server):
    """Pages over the `writable` library, for tests that add descriptions, votes or photos."""
    yield from _page_factory(browser, writable_server)


def sign_in(page, key: str, lang: str = "en") -> None:
    """Sign in with the form at the top of the page; the key box is emptied once signed in."""
    page.get_by_label(TEXT[lang]["token"]).fill(key)
    page.get_by_role("button", name=TEXT[lang]["sign_in"], exact=True).click()
    page.locator("#signed-in").wait_for(state="visible")
    assert page.get_by_label(TEXT[lang]["token"]).input_value() == ""


def assert_no_key_in_the_browser(page, key: str) -> None:
    """Neither the key nor anything else sits in localStorage or sessionStorage; the session cookie
    is httpOnly and SameSite=Strict, so document.cookie does not show it."""
    assert page.evaluate("[localStorage.length, sessionStorage.length]") == [0, 0]
    assert key not in page.evaluate("document.cookie")
    [cookie] = [c for c in page.context.cookies() if c["name"] == "withsense_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and key not in cookie["value"]


def search(page, query: str, lang: str = "en") -> None:
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == lang
    page.get_by_label(TEXT[lang]["describe"]).fill(query)
    page.get_by_role("button", name=TEXT[lang]["search"], exact=True).click()
    page.wait_for_function("() => !document.querySelector('#search-status.busy')")


def wait_for_result_images(page, n: int = 5) -> list[int]:
    page.wait_for_function(RESULT_IMAGES_LOADED, arg=n)
    widths = page.eval_on_selector_all("#results img", "imgs => imgs.map(i => i.naturalWidth)")
    notices = page.locator("#results .notice-card").count()
    assert len(widths) + notices == n and all(w > 0 for w in widths)
    return result_ids(page)


@both_languages
def test_a_withheld_photo_shows_the_notice_card(open_page, live_server, loaded, lang):
    """A photo the content rule marks still ranks; its card holds the notice (in the page's
    language: the API's is English), not a picture."""
    query = "people on a beach"
    api = requests.post(f"{live_server}/api/search", json={"query": query}, timeout=60).json()
    withheld = [r["photo_id"] for r in api["results"] if r["image_url"] is None]
    assert withheld, "the fixture has marked photos among the top 5"
    assert all(r["notice"] == NOTICE for r in api["results"] if r["image_url"] is None)
    page = open_page(lang=lang)
    search(page, query, lang)
    wait_for_result_images(page, 5)
    card = page.locator(f'#results .card[data-photo-id="{withheld[0]}"]')
    assert card.locator(".notice-card").inner_text() == TEXT[lang]["notice"] and card.locator("img").count() == 0
    page.wait_for_function(CARDS_SETTLED)
    if lang != "en":  # nor does the API's English notice show through in place of a flagged description
        assert NOTICE not in page.locator("main").inner_text()
    screenshot(page, named("search-with-notice.png", lang))
    page.goto(f"/photos/{withheld[0]}")
    assert page.locator("#photo-image.notice-card").inner_text() == TEXT[lang]["notice"]
    page.wait_for_function(PHOTO_LOADED)
    if lang != "en":
        assert NOTICE not in page.locator("main").inner_text()


def result_ids(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#results .card", "cs => cs.map(c => c.dataset.photoId)")]


def named(name: str, lang: str) -> str:
    """The screenshot's file name: the English one as it was, the Russian one with "-ru"."""
    return name if lang == "en" else name.replace(".png", f"-{lang}.png")


def screenshot(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / name), full_page=True)


def descriptions_of(library, photo_id: int) -> list[str]:
    with library["engine"].connect() as conn:
        return list(conn.scalars(text(  # held-out test queries are never shown
            "SELECT text FROM descriptions WHERE photo_id = :p AND source <> 'test' ORDER BY id"), {"p": photo_id}))


# ---- search ----------------------------------------------------------------------------------


@both_languages
def test_search_shows_five_photos_with_scores(open_page, live_server, lang):
    query = "a dog runs through the snow"
    page = open_page(lang=lang)
    search(page, query, lang)
    ids = wait_for_result_images(page, 5)
    api = requests.post(f"{live_server}/api/search", json={"query": query}, timeout=60).json()
    assert ids == [r["photo_id"] for r in api["results"]]
    scores = page.locator("#results .score").all_inner_texts()
    point = {"en": ".", "ru": ","}[lang]  # 0.83 in English, 0,83 in Russian
    assert [s.split()[-1] for s in scores] == [f"{r['score']:.2f}".replace(".", point) for r in api["results"]]
    assert all(re.fullmatch(r"[01][.,]\d\d", s.split()[-1]) for s in scores)
    assert page.locator("#notice").is_hidden()
    if api["results"][0]["score"] >= 0.5:
        assert page.locator("#search-status").inner_text() == TEXT[lang]["photos_for"].format(query=query)
    assert "q=a+dog+runs+through+the+snow" in page.url  # the search is a shareable URL
    page.wait_for_function(CARDS_SETTLED)
    screenshot(page, named("search-desktop.png", lang))


@both_languages
def test_result_cards_list_their_photos_descriptions(open_page, loaded, lang):
    page = open_page(lang=lang)
    search(page, "a dog runs through the snow", lang)
    ids = wait_for_result_images(page, 5)
    page.wait_for_function(CARDS_SETTLED)
    for card, photo_id in zip(page.locator("#results .card").all(), ids, strict=False):
        expected = descriptions_of(loaded, photo_id)[:3] or [TEXT[lang]["no_descriptions"]]
        assert card.locator(".card-descriptions li").all_inner_texts()[:len(expected)] == expected


@both_languages
def test_blocked_query_shows_the_notice_and_no_photos(open_page, lang):
    page = open_page(lang=lang)
    search(page, "two boys playing", lang)
    notice = page.locator("#notice")
    notice.wait_for(state="visible")
    assert notice.inner_text() == TEXT[lang]["notice"]
    assert page.locator("#results img").count() == 0
    assert page.locator("#pager").is_hidden()
    screenshot(page, named("search-blocked.png", lang))


@both_languages
def test_paging_moves_by_five(open_page, live_server, lang):
    query = "people outside"
    page = open_page(lang=lang)
    search(page, query, lang)
    first_page = wait_for_result_images(page, 5)
    assert page.get_by_role("button", name=TEXT[lang]["previous"]).is_disabled()
    page.get_by_role("button", name=TEXT[lang]["next"]).click()
    page.wait_for_url(re.compile(r"offset=5"))
    page.wait_for_function("() => !document.querySelector('#search-status.busy')")
    second_page = wait_for_result_images(page, 5)
    api = requests.post(f"{live_server}/api/search", json={"query": query, "limit": 5, "offset": 5}, timeout=60).json()
    assert second_page == [r["photo_id"] for r in api["results"]]
    assert not set(first_page) & set(second_page)
    assert page.locator("#results .rank").first.inner_text() == "#6"
    page.get_by_role("button", name=TEXT[lang]["previous"]).click()
    page.wait_for_function("() => !document.querySelector('#search-status.busy')")
    assert wait_for_result_images(page, 5) == first_page


@both_languages
def test_a_short_last_page_says_why_in_the_page_language(open_page, live_server, lang):
    query = "people outside"
    api = requests.post(f"{live_server}/api/search", json={"query": query, "limit": 5, "offset": 15}, timeout=60).json()
    assert api["message"] == "only 16 photos can be searched" and len(api["results"]) < 5  # 16 fixture photos
    page = open_page(lang=lang)
    page.goto(f"/?q={query.replace(' ', '+')}&offset=15")
    page.wait_for_function("() => document.querySelector('#search-status').textContent.length > 0"
                           " && !document.querySelector('#search-status.busy')")
    wait_for_result_images(page, len(api["results"]))
    status = page.locator("#search-status").inner_text()
    assert status.endswith(TEXT[lang]["only_16"]), status  # the page's own words for the API's message
    assert page.get_by_role("button", name=TEXT[lang]["next"]).is_disabled()
    assert page.get_by_role("button", name=TEXT[lang]["previous"]).is_enabled()


@both_languages
def test_phone_width_has_no_horizontal_scroll(open_page, lang):
    page = open_page(PHONE, lang=lang)
    search(page, "a dog runs through the snow", lang)
    wait_for_result_images(page, 5)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, named("search-phone.png", lang))
    photo_id = result_ids(page)[0]
    page.goto(f"/photos/{photo_id}")
    page.wait_for_function("() => document.querySelector('#photo-image').naturalWidth > 0")
    page.wait_for_function(PHOTO_LOADED)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, named("photo-phone.png", lang))


# ---- photo page ------------------------------------------------------------------------------


@both_languages
def test_photo_page_shows_image_descriptions_and_similar_photos(open_page, loaded, lang):
    page = open_page(lang=lang)
    search(page, "a dog runs through the snow", lang)
    photo_id = wait_for_result_images(page, 5)[0]
    page.locator("#results .card-photo").first.click()
    page.wait_for_url(f"**/photos/{photo_id}")
    page.wait_for_function("() => document.querySelector('#photo-image').naturalWidth > 0")
    page.wait_for_function(PHOTO_LOADED)
    shown = page.locator("#descriptions .description-text").all_inner_texts()
    assert shown == descriptions_of(loaded, photo_id) and shown
    assert page.get_by_role("button", name=TEXT[lang]["match"], exact=True).count() == len(shown)
    assert page.get_by_role("button", name=TEXT[lang]["no_match"], exact=True).count() == len(shown)
    page.wait_for_function("""() => {
        const imgs = [...document.querySelectorAll('#similar img')];
        return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
    }""")
    similar = [int(x) for x in page.eval_on_selector_all("#similar .card", "cs => cs.map(c => c.dataset.photoId)")]
    assert photo_id not in similar
    screenshot(page, named("photo-desktop.png", lang))


def test_unknown_photo_page_is_404(live_server):
    r = requests.get(f"{live_server}/photos/999999", timeout=10)
    assert r.status_code == 404 and "There is no photo 999999" in r.text


def test_page_never_contains_the_api_token(live_server):
    for path in ["/", "/upload"]:
        r = requests.get(live_server + path, timeout=10)
        assert r.status_code == 200 and TOKEN not in r.text


@both_languages
def test_adding_a_description_needs_the_token_then_makes_the_photo_findable(open_writable_page, writable, lang):
    with writable["engine"].connect() as conn:  # a test-split photo: training never sees it
        photo_id = conn.scalar(text("SELECT id FROM photos WHERE split = 'test' ORDER BY id LIMIT 1"))
    topping = {"en": "cheese", "ru": "chocolate"}[lang]  # each run adds a description of its own
    description = f"a yellow submarine floating above a cathedral made of {topping}"
    page = open_writable_page(lang=lang)
    page.goto(f"/photos/{photo_id}")
    form = page.locator("#description-form")
    form.get_by_label(TEXT[lang]["description"]).fill(description)
    form.get_by_role("button", name=TEXT[lang]["add_description"]).click()
    status = page.locator("#description-status")
    page.wait_for_function("() => document.querySelector('#description-status.error')")
    # refused without the token, and the page says why in its own words (the API's 401 text is English)
    assert TEXT[lang]["token_word"] in status.inner_text().lower() and "Bearer" not in status.inner_text()
    assert description not in descriptions_of(writable, photo_id)

    sign_in(page, TOKEN, lang)
    form.get_by_role("button", name=TEXT[lang]["add_description"]).click()
    page.wait_for_function("() => document.querySelector('#description-status.ok')")
    page.locator("#descriptions .description-text", has_text=description).wait_for()
    assert description in descriptions_of(writable, photo_id)

    search(page, description, lang)
    ids = wait_for_result_images(page, 5)
    assert ids[0] == photo_id
    # signed in across pages by the httpOnly cookie alone: the key is in no storage a script can read
    assert page.locator("#signed-in-as").inner_text() == TEXT[lang]["signed_in_as"].format(name="bootstrap")
    assert_no_key_in_the_browser(page, TOKEN)


@both_languages
def test_match_buttons_record_a_vote(open_writable_page, writable, lang):
    with writable["engine"].connect() as conn:
        photo_id, description_id = conn.execute(text(
            "SELECT photo_id, id FROM descriptions WHERE source = 'dataset' AND photo_id IS NOT NULL "
            "ORDER BY id DESC LIMIT 1")).one()
        before = conn.scalar(text("SELECT count(*) FROM crowd_votes WHERE photo_id = :p AND description_id = :d"),
                             {"p": photo_id, "d": description_id})
    from tests.helpers import new_user

    # a rater of its own per run: one person's second vote on the pair would replace the first
    rater = new_user(writable["engine"], "rater")
    page = open_writable_page(lang=lang)
    page.goto(f"/photos/{photo_id}")
    sign_in(page, rater["key"], lang)
    item = page.locator(f'#descriptions [data-description-id="{description_id}"]')
    item.get_by_role("button", name=TEXT[lang]["no_match"], exact=True).click()
    item.locator(".status.ok").wait_for()
    assert item.get_by_role("button", name=TEXT[lang]["no_match"], exact=True).get_attribute("aria-pressed") == "true"
    with writable["engine"].connect() as conn:
        votes = conn.execute(text(
            "SELECT match FROM crowd_votes WHERE photo_id = :p AND description_id = :d ORDER BY id"),
            {"p": photo_id, "d": description_id}).scalars().all()
    assert len(votes) == before + 1 and votes[-1] is False


def test_a_signed_in_rater_marks_a_result_as_fitting_or_not(open_writable_page, writable):
    """The "Fits" / "Does not fit" control under each result, for a key whose role may vote; a
    second click replaces the first vote (one vote per person per pair)."""
    from tests.helpers import new_user

    rater = new_user(writable["engine"], "rater")
    query = "a dog runs on the grass"
    page = open_writable_page()
    search(page, query)
    wait_for_result_images(page, 5)
    assert page.locator("#results .vote-row").count() == 0  # not signed in: no control
    sign_in(page, rater["key"])
    search(page, query)
    ids = wait_for_result_images(page, 5)
    first = page.locator(f'#results .card[data-photo-id="{ids[0]}"]')
    first.get_by_role("button", name="Fits", exact=True).click()
    first.locator(".vote-row .status.ok").wait_for()
    first.get_by_role("button", name="Does not fit", exact=True).click()
    page.wait_for_function("() => document.querySelector('#results .vote-row .status.ok')?.textContent.includes('not')")
    assert first.get_by_role("button", name="Does not fit", exact=True).get_attribute("aria-pressed") == "true"
    with writable["engine"].connect() as conn:
        votes = conn.execute(text("SELECT match FROM crowd_votes WHERE voter_id = :v AND photo_id = :p AND query = :q"),
                             {"v": rater["user_id"], "p": ids[0], "q": query}).scalars().all()
    assert votes == [False]
    assert page.locator("#results .vote-row").count() == 5


@both_languages
def test_uploading_a_known_photo_points_to_it(open_writable_page, writable, lang):
    with writable["engine"].connect() as conn:
        photo_id, file_name = conn.execute(text(
            "SELECT id, file_name FROM photos WHERE split = 'train' ORDER BY id LIMIT 1")).one()
    path = writable["dataset"].photos[file_name][1]
    page = open_writable_page(lang=lang)
    page.goto("/upload")
    sign_in(page, TOKEN, lang)
    page.get_by_label(TEXT[lang]["photo"]).set_input_files(str(path))
    page.get_by_label(TEXT[lang]["description"]).fill("the same photo again")
    page.get_by_role("button", name=TEXT[lang]["upload"], exact=True).click()
    page.wait_for_function("() => document.querySelector('#upload-status.ok, #upload-status.error')")
    status = page.locator("#upload-status")
    assert status.inner_text().startswith(TEXT[lang]["already_here"]), status.inner_text()
    assert status.get_by_role("link").first.get_attribute("href") == f"/photos/{photo_id}"


@both_languages
def test_sign_in_upload_sign_out_then_the_upload_form_refuses(open_writable_page, writable, lang):
    """The page signs in with a person's key (sent once), uploads under the CSP, signs out, and the
    same form is then refused: the session is gone from the database, not just from the page."""
    from tests.helpers import new_user
    from tests.test_faults import _jpeg

    user = new_user(writable["engine"], "photographer")
    page = open_writable_page(lang=lang)
    csp_violations = []
    page.on("console", lambda msg: csp_violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto("/upload")
    sign_in(page, user["key"], lang)
    assert page.locator("#signed-in-as").inner_text() == TEXT[lang]["signed_in_as"].format(name=user["name"])
    assert_no_key_in_the_browser(page, user["key"])

    def upload(seed: int) -> str:
        page.get_by_label(TEXT[lang]["photo"]).set_input_files(
            files=[{"name": f"upload-{seed}.jpg", "mimeType": "image/jpeg", "buffer": _jpeg(seed)}])
        page.get_by_role("button", name=TEXT[lang]["upload"], exact=True).click()
        page.wait_for_function("() => document.querySelector('#upload-status.ok, #upload-status.error')")
        return page.locator("#upload-status").get_attribute("class")

    seed = 8_000_000 + {"en": 1, "ru": 2}[lang] * 1000 + user["user_id"] % 1000
    assert "ok" in upload(seed), page.locator("#upload-status").inner_text()
    with writable["engine"].connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM photos WHERE owner_id = :u"), {"u": user["user_id"]}) == 1
        assert conn.scalar(text("SELECT count(*) FROM sessions WHERE user_id = :u"), {"u": user["user_id"]}) == 1

    page.get_by_role("button", name=TEXT[lang]["sign_out"], exact=True).click()
    page.locator("#sign-in").wait_for(state="visible")
    with writable["engine"].connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM sessions WHERE user_id = :u"), {"u": user["user_id"]}) == 0
    page.evaluate("() => { document.getElementById('upload-status').className = 'status'; }")
    assert "error" in upload(seed + 1)
    assert TEXT[lang]["token_word"] in page.locator("#upload-status").inner_text().lower()
    page.reload()  # a fresh page load asks GET /api/me: still signed out
    page.locator("#sign-in").wait_for(state="visible")
    with writable["engine"].connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM photos WHERE owner_id = :u"), {"u": user["user_id"]}) == 1
    assert csp_violations == []


# ---- languages ----------------------------------------------------------------------------------


def test_the_language_switch_keeps_the_search_and_sticks(open_page):
    page = open_page(lang="en")  # an English browser
    query = "a dog runs through the snow"
    search(page, query, "en")
    wait_for_result_images(page, 5)
    page.get_by_role("link", name="Русский").click()
    page.wait_for_function("() => document.documentElement.lang === 'ru'")
    page.wait_for_function("() => !document.querySelector('#search-status.busy')")
    wait_for_result_images(page, 5)  # the same search, now in Russian
    assert page.get_by_label(TEXT["ru"]["describe"]).input_value() == query
    assert "lang=" not in page.url and "q=a+dog" in page.url  # the choice lives in the cookie, not the URL
    assert page.get_by_role("link", name="Русский").get_attribute("aria-current") == "true"
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert cookies.get("withsense_lang") == "ru"
    page.get_by_role("link", name=TEXT["ru"]["upload"]).click()  # other pages follow
    page.wait_for_url("**/upload")
    assert page.locator("html").get_attribute("lang") == "ru"
    assert page.get_by_role("heading", level=1).inner_text() == "Загрузить фотографию"
    page.get_by_role("link", name="English").click()
    page.wait_for_function("() => document.documentElement.lang === 'en'")
    assert page.get_by_role("heading", level=1).inner_text() == "Upload a photo"


@both_languages
def test_plural_forms_in_the_page_script(open_page, lang):
    """app.js's ngettext with the server's forms and the browser's plural rules."""
    page = open_page(lang=lang)
    page.goto("/")
    numbers = [1, 2, 5, 21, 22, 25, 11, 12, 14, 104]
    got = page.evaluate("""(ns) => ns.map(n => ngettext(
        "Only %(num)d photo can be searched.", "Only %(num)d photos can be searched.", n))""", numbers)
    if lang == "ru":
        words = ["фотография", "фотографии", "фотографий", "фотография", "фотографии", "фотографий",
                 "фотографий", "фотографий", "фотографий", "фотографии"]
        assert got == [f"Всего в поиске {n} {w}." for n, w in zip(numbers, words, strict=True)]
    else:
        assert got == [f"Only {n} photo{'s' if n != 1 else ''} can be searched." for n in numbers]


@both_languages
def test_api_errors_show_the_pages_own_text(open_page, lang):
    """Whatever the API says (in English), the page says it in its language; unknown cases get a general text."""
    page = open_page(lang=lang)
    statuses = {429: "too many searches: at most 60 per minute per client; retry in 5 s",
                500: "internal error", 418: "I'm a teapot"}
    expected = {
        "en": {429: "Too many searches in a minute. Wait a little and try again.",
               500: "Something went wrong on the server. Try again later.", 418: "The request failed (error 418)."},
        "ru": {429: "Слишком много запросов за минуту. Подождите немного и попробуйте снова.",
               500: "На сервере что-то пошло не так. Попробуйте позже.", 418: "Запрос не выполнен (ошибка 418)."},
    }[lang]
    def answer(status, message):
        return lambda route: route.fulfill(status=status, json={"error": message, "status": status})

    for status, message in statuses.items():
        page.route("**/api/search", answer(status, message))
        search(page, f"a dog {status}", lang)
        page.wait_for_function("() => document.querySelector('#search-status.error')")
        assert page.locator("#search-status").inner_text() == expected[status]
        page.unroute("**/api/search")


# ---- nothing fits well ------------------------------------------------------------------------------


@both_languages
def test_the_page_says_when_nothing_fits_well(open_page, live_server, lang):
    """Best score under 0.5: the page says no photo fits well and shows the closest ones. The rule on
    the API's real answer for a nonsense query, then on the same answer with every score scaled down
    (whatever the fixture's scorer gives, the page must show the sentence)."""
    query = "xqzv blorft kpwmn"
    api = requests.post(f"{live_server}/api/search", json={"query": query}, timeout=60).json()
    page = open_page(lang=lang)
    search(page, query, lang)
    wait_for_result_images(page, len(api["results"]))
    status = page.locator("#search-status").inner_text()
    assert (status == TEXT[lang]["weak"]) == (api["results"][0]["score"] < 0.5), (status, api["results"][0]["score"])

    def scaled(route):  # the real answer, with scores a calibrated model gives a no-match query
        body = route.fetch().json()
        for i, result in enumerate(body["results"]):
            result["score"] = round(0.31 - 0.04 * i, 3)
        route.fulfill(json=body)

    page.route("**/api/search", scaled)
    search(page, query + " again", lang)
    wait_for_result_images(page, 5)
    assert page.locator("#search-status").inner_text() == TEXT[lang]["weak"]
    assert page.locator("#results.weak").count() == 1  # grey bars
    screenshot(page, named("search-nothing-fits.png", lang))
    page.unroute("**/api/search")

    def confident(route):  # the real answer with the scores of a good match (the fixture's scorer is small)
        body = route.fetch().json()
        for i, result in enumerate(body["results"]):
            result["score"] = round(0.91 - 0.04 * i, 3)
        route.fulfill(json=body)

    page.route("**/api/search", confident)
    search(page, "a dog runs through the snow", lang)  # a good match: no sentence, accent bars
    wait_for_result_images(page, 5)
    assert page.locator("#results.weak").count() == 0
    assert TEXT[lang]["weak"] not in page.locator("#search-status").inner_text()
    page.unroute("**/api/search")
