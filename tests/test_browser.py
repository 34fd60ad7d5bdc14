"""The web page in a real headless Chromium, against the real server, database and models.

Chromium is Debian's (/usr/bin/chromium; CI installs it in .ci/run), driven by PyPI playwright.
Screenshots of the search and photo pages (desktop and phone width) go to reports/screens/.
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
    """A page factory over ``base_url``: each page in a fresh browser context (empty localStorage).
    Yields the factory, then fails the test if any page raised a JavaScript error."""
    contexts, errors = [], []

    def make(viewport=DESKTOP):
        context = browser.new_context(viewport=viewport, base_url=base_url)
        context.set_default_timeout(60_000)  # the first search on 2 shared cores can be slow
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
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


def search(page, query: str) -> None:
    page.goto("/")
    page.get_by_label("Describe a scene").fill(query)
    page.get_by_role("button", name="Search").click()
    page.wait_for_function("() => !document.querySelector('#search-status.busy')")


def wait_for_result_images(page, n: int = 5) -> list[int]:
    page.wait_for_function(RESULT_IMAGES_LOADED, arg=n)
    widths = page.eval_on_selector_all("#results img", "imgs => imgs.map(i => i.naturalWidth)")
    notices = page.locator("#results .notice-card").count()
    assert len(widths) + notices == n and all(w > 0 for w in widths)
    return result_ids(page)


def test_a_withheld_photo_shows_the_notice_card(open_page, live_server, loaded):
    """A photo the content rule marks still ranks; its card holds the notice, not a picture."""
    from service.policy import NOTICE

    query = "people on a beach"
    api = requests.post(f"{live_server}/api/search", json={"query": query}, timeout=60).json()
    withheld = [r["photo_id"] for r in api["results"] if r["image_url"] is None]
    assert withheld, "the fixture has marked photos among the top 5"
    page = open_page()
    search(page, query)
    wait_for_result_images(page, 5)
    card = page.locator(f'#results .card[data-photo-id="{withheld[0]}"]')
    assert card.locator(".notice-card").inner_text() == NOTICE and card.locator("img").count() == 0
    screenshot(page, "search-with-notice.png")
    page.goto(f"/photos/{withheld[0]}")
    assert page.locator("#photo-image.notice-card").inner_text() == NOTICE


def result_ids(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#results .card", "cs => cs.map(c => c.dataset.photoId)")]


def screenshot(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / name), full_page=True)


def descriptions_of(library, photo_id: int) -> list[str]:
    with library["engine"].connect() as conn:
        return list(conn.scalars(text(  # held-out test queries are never shown
            "SELECT text FROM descriptions WHERE photo_id = :p AND source <> 'test' ORDER BY id"), {"p": photo_id}))


# ---- search ----------------------------------------------------------------------------------


def test_search_shows_five_photos_with_scores(open_page, live_server):
    page = open_page()
    search(page, "a dog runs through the snow")
    ids = wait_for_result_images(page, 5)
    api = requests.post(f"{live_server}/api/search", json={"query": "a dog runs through the snow"}, timeout=60).json()
    assert ids == [r["photo_id"] for r in api["results"]]
    scores = page.locator("#results .score").all_inner_texts()
    assert [s.split()[-1] for s in scores] == [f"{r['score']:.2f}" for r in api["results"]]
    assert all(re.fullmatch(r"[01]\.\d\d", s.split()[-1]) for s in scores)
    assert page.locator("#notice").is_hidden()
    assert "q=a+dog+runs+through+the+snow" in page.url  # the search is a shareable URL
    page.wait_for_function(CARDS_SETTLED)
    screenshot(page, "search-desktop.png")


def test_result_cards_list_their_photos_descriptions(open_page, loaded):
    page = open_page()
    search(page, "a dog runs through the snow")
    ids = wait_for_result_images(page, 5)
    page.wait_for_function(CARDS_SETTLED)
    for card, photo_id in zip(page.locator("#results .card").all(), ids, strict=False):
        expected = descriptions_of(loaded, photo_id)[:3] or ["No descriptions yet."]
        assert card.locator(".card-descriptions li").all_inner_texts()[:len(expected)] == expected


def test_blocked_query_shows_the_notice_and_no_photos(open_page):
    page = open_page()
    search(page, "two boys playing")
    notice = page.locator("#notice")
    notice.wait_for(state="visible")
    assert notice.inner_text() == NOTICE
    assert page.locator("#results img").count() == 0
    assert page.locator("#pager").is_hidden()
    screenshot(page, "search-blocked.png")


def test_paging_moves_by_five(open_page, live_server):
    query = "people outside"
    page = open_page()
    search(page, query)
    first_page = wait_for_result_images(page, 5)
    assert page.get_by_role("button", name="Previous").is_disabled()
    page.get_by_role("button", name="Next").click()
    page.wait_for_url(re.compile(r"offset=5"))
    page.wait_for_function("() => !document.querySelector('#search-status.busy')")
    second_page = wait_for_result_images(page, 5)
    api = requests.post(f"{live_server}/api/search", json={"query": query, "limit": 5, "offset": 5}, timeout=60).json()
    assert second_page == [r["photo_id"] for r in api["results"]]
    assert not set(first_page) & set(second_page)
    assert page.locator("#results .rank").first.inner_text() == "#6"
    page.get_by_role("button", name="Previous").click()
    page.wait_for_function("() => !document.querySelector('#search-status.busy')")
    assert wait_for_result_images(page, 5) == first_page


def test_a_short_last_page_shows_the_api_message(open_page, live_server):
    query = "people outside"
    api = requests.post(f"{live_server}/api/search", json={"query": query, "limit": 5, "offset": 15}, timeout=60).json()
    assert api["message"] and len(api["results"]) < 5  # 16 fixture photos: page 4 is short
    page = open_page()
    page.goto(f"/?q={query.replace(' ', '+')}&offset=15")
    page.wait_for_function("() => document.querySelector('#search-status').textContent.length > 0"
                           " && !document.querySelector('#search-status.busy')")
    wait_for_result_images(page, len(api["results"]))
    status = page.locator("#search-status").inner_text()
    assert api["message"].lower() in status.lower(), status
    assert page.get_by_role("button", name="Next").is_disabled()
    assert page.get_by_role("button", name="Previous").is_enabled()


def test_phone_width_has_no_horizontal_scroll(open_page):
    page = open_page(PHONE)
    search(page, "a dog runs through the snow")
    wait_for_result_images(page, 5)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "search-phone.png")
    photo_id = result_ids(page)[0]
    page.goto(f"/photos/{photo_id}")
    page.wait_for_function("() => document.querySelector('#photo-image').naturalWidth > 0")
    page.wait_for_function(PHOTO_LOADED)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "photo-phone.png")


# ---- photo page ------------------------------------------------------------------------------


def test_photo_page_shows_image_descriptions_and_similar_photos(open_page, loaded):
    page = open_page()
    search(page, "a dog runs through the snow")
    photo_id = wait_for_result_images(page, 5)[0]
    page.locator("#results .card-photo").first.click()
    page.wait_for_url(f"**/photos/{photo_id}")
    page.wait_for_function("() => document.querySelector('#photo-image').naturalWidth > 0")
    page.wait_for_function(PHOTO_LOADED)
    shown = page.locator("#descriptions .description-text").all_inner_texts()
    assert shown == descriptions_of(loaded, photo_id) and shown
    assert page.get_by_role("button", name="Match", exact=True).count() == len(shown)
    assert page.get_by_role("button", name="No match", exact=True).count() == len(shown)
    page.wait_for_function("""() => {
        const imgs = [...document.querySelectorAll('#similar img')];
        return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
    }""")
    similar = [int(x) for x in page.eval_on_selector_all("#similar .card", "cs => cs.map(c => c.dataset.photoId)")]
    assert photo_id not in similar
    screenshot(page, "photo-desktop.png")


def test_unknown_photo_page_is_404(live_server):
    r = requests.get(f"{live_server}/photos/999999", timeout=10)
    assert r.status_code == 404 and "There is no photo 999999" in r.text


def test_page_never_contains_the_api_token(live_server):
    for path in ["/", "/upload"]:
        r = requests.get(live_server + path, timeout=10)
        assert r.status_code == 200 and TOKEN not in r.text


def test_adding_a_description_needs_the_token_then_makes_the_photo_findable(open_writable_page, writable):
    with writable["engine"].connect() as conn:  # a test-split photo: training never sees it
        photo_id = conn.scalar(text("SELECT id FROM photos WHERE split = 'test' ORDER BY id LIMIT 1"))
    description = "a yellow submarine floating above a cathedral made of cheese"
    page = open_writable_page()
    page.goto(f"/photos/{photo_id}")
    form = page.locator("#description-form")
    form.get_by_label("Description").fill(description)
    form.get_by_role("button", name="Add description").click()
    status = page.locator("#description-status")
    page.wait_for_function("() => document.querySelector('#description-status.error')")
    assert "token" in status.inner_text().lower()  # refused without the token, and the page says why
    assert description not in descriptions_of(writable, photo_id)

    page.get_by_label("API token").fill(TOKEN)
    form.get_by_role("button", name="Add description").click()
    page.wait_for_function("() => document.querySelector('#description-status.ok')")
    page.locator("#descriptions .description-text", has_text=description).wait_for()
    assert description in descriptions_of(writable, photo_id)

    search(page, description)
    ids = wait_for_result_images(page, 5)
    assert ids[0] == photo_id
    assert page.evaluate("localStorage.getItem('withsense.apiToken')") == TOKEN  # kept across pages


def test_match_buttons_record_a_vote(open_writable_page, writable):
    with writable["engine"].connect() as conn:
        photo_id, description_id = conn.execute(text(
            "SELECT photo_id, id FROM descriptions WHERE source = 'dataset' AND photo_id IS NOT NULL "
            "ORDER BY id DESC LIMIT 1")).one()
        before = conn.scalar(text("SELECT count(*) FROM crowd_votes WHERE photo_id = :p AND description_id = :d"),
                             {"p": photo_id, "d": description_id})
    page = open_writable_page()
    page.goto(f"/photos/{photo_id}")
    page.get_by_label("API token").fill(TOKEN)
    item = page.locator(f'#descriptions [data-description-id="{description_id}"]')
    item.get_by_role("button", name="No match", exact=True).click()
    item.locator(".status.ok").wait_for()
    assert item.get_by_role("button", name="No match", exact=True).get_attribute("aria-pressed") == "true"
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
    page.get_by_label("API token").fill(rater["key"])
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


def test_uploading_a_known_photo_points_to_it(open_writable_page, writable):
    with writable["engine"].connect() as conn:
        photo_id, file_name = conn.execute(text(
            "SELECT id, file_name FROM photos WHERE split = 'train' ORDER BY id LIMIT 1")).one()
    path = writable["dataset"].photos[file_name][1]
    page = open_writable_page()
    page.goto("/upload")
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_label("Photo").set_input_files(str(path))
    page.get_by_label("Description").fill("the same photo again")
    page.get_by_role("button", name="Upload").click()
    page.wait_for_function("() => document.querySelector('#upload-status.ok, #upload-status.error')")
    status = page.locator("#upload-status")
    assert "already here" in status.inner_text(), status.inner_text()
    assert status.get_by_role("link").first.get_attribute("href") == f"/photos/{photo_id}"
