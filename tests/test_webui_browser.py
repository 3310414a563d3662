"""The web UI in a real headless Chromium (Debian's ``chromium``, driven by Playwright; no
browser is downloaded): type a query with autocompletion, open a shot, and the video starts at
the shot; the programme page draws its charts; "find similar" on a shot and a picture
uploaded on the search page list similar shots; hostile titles stay text.

Screenshots of the search results and the player are saved under ``artifacts/`` (git-ignored);
with ``TVINDEX_UPDATE_SCREENSHOTS=1`` they also replace the README's ``docs/screenshots/``."""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_webui_catalogue import (
    REPO,
    XSS_TITLE,
    build_catalogue,
    demo_env,
    index_demo,
    run_serve,
    serve_in_thread,
    web_settings,
)

from webui import create_app

pytestmark = pytest.mark.browser
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "artifacts"
SCREENSHOTS = REPO / "docs" / "screenshots"


def save_screenshot(page, name: str) -> Path:
    """``artifacts/webui-<name>.png``; also ``docs/screenshots/<name>.png`` when
    ``TVINDEX_UPDATE_SCREENSHOTS=1`` (how the README's pictures are made)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"webui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("TVINDEX_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)
    return path


def api_ids(base: str, q: str, level: str = "shot") -> set[str]:
    """Every hit id of a query, through the API's pages."""
    url = f"{base}/api/v1/search?level={level}&limit=100&q={urllib.parse.quote(q)}"
    ids: set[str] = set()
    while url:
        with urllib.request.urlopen(url, timeout=20) as resp:
            body = json.load(resp)
        ids.update(h["id"] for h in body["hits"])
        url = base + body["next"] if body.get("next") else None
    return ids


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.problems = problems  # type: ignore[attr-defined]
    yield pg
    context.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Iterator[str]:
    data = index_demo(tmp_path_factory, shared_dir)
    with run_serve(data, demo_env(shared_dir)) as url:
        yield url


@pytest.mark.media
def test_search_bicycle_then_play_the_shot(page, demo):
    page.goto(demo + "/")
    box = page.locator("#q")
    box.press_sequentially("object:bic", delay=40)
    suggestion = page.locator("#suggestions li", has_text="object:bicycle").first
    suggestion.wait_for(state="visible")
    suggestion.click()  # autocompletion fills in the label
    assert box.input_value().strip() == "object:bicycle"
    box.press("Enter")
    page.wait_for_url("**/?q=object*bicycle*")
    cards = page.locator("article.hit")
    cards.first.wait_for()
    ids = [cards.nth(i).get_attribute("data-hit-id") for i in range(cards.count())]
    bikes = [i for i in ids if i.split("@")[0] in ("bici-01", "bici-02")]
    assert bikes, ids
    page.wait_for_load_state("networkidle")  # thumbnails in, for the screenshot
    ARTIFACTS.mkdir(exist_ok=True)
    shot_path = ARTIFACTS / "webui-search.png"
    page.screenshot(path=str(shot_path), full_page=True)
    print(f"search results screenshot: {shot_path}")

    with urllib.request.urlopen(f"{demo}/api/v1/shots/{bikes[0]}", timeout=10) as resp:
        start = json.load(resp)["start_s"]
    page.locator(f'article.hit[data-hit-id="{bikes[0]}"] a.card-link').click()
    page.wait_for_url(f"**/episodes/{bikes[0].split('@')[0]}?shot=*")
    page.locator('video#player[data-ready="1"]').wait_for(state="attached")
    at = page.evaluate("document.getElementById('player').currentTime")
    assert abs(at - start) < 0.5, (at, start)
    assert page.evaluate("document.getElementById('player').error") is None

    # The shot list seeks the same video without leaving the page.
    other = page.locator(".shot-card").first
    target = float(other.get_attribute("data-seek"))
    other.click()
    page.wait_for_function(
        f"Math.abs(document.getElementById('player').currentTime - {target}) < 0.5")
    assert not page.problems, page.problems


@pytest.mark.media
def test_programme_page_draws_its_charts(page, demo):
    page.goto(demo + "/programmes/ciutat-en-bici")
    charts = page.locator("#charts figure.chart")
    assert charts.count() == 2
    for i in range(2):
        bars = charts.nth(i).locator("rect.bar-score")
        assert bars.count() >= 5
        widths = [bars.nth(j).bounding_box()["width"] for j in range(bars.count())]
        assert widths[0] > 20 and widths == sorted(widths, reverse=True)
    assert page.locator("#similar a.card-link").count() == 4
    assert page.locator("#similar a.card-link h3").first.inner_text() in {
        "La plaça", "Al volant", "L'arbre", "Conill gran"}
    assert not page.problems, page.problems


@pytest.mark.media
def test_find_similar_shots_then_search_by_picture(page, demo, shared_dir):
    page.goto(demo + "/?q=object:bicycle")
    first = page.locator("article.hit").first
    first.wait_for()
    shot = first.get_attribute("data-hit-id")
    first.locator("a.similar-action").click()
    page.wait_for_url("**/similar?shot=*")
    assert "like this shot" in page.locator("#example").inner_text().lower()
    cards = page.locator("#results article.hit")
    cards.first.wait_for()
    ids = [cards.nth(i).get_attribute("data-hit-id") for i in range(cards.count())]
    assert ids and shot not in ids

    # From the player's shot list too.
    page.goto(demo + "/episodes/bici-02?shot=1")
    page.locator(".shot-cell a.similar-action").first.click()
    page.wait_for_url("**/similar?shot=bici-02*")
    page.locator("#results article.hit").first.wait_for()

    # A picture uploaded on the search page: the results page shows it back and its shots.
    photo = min((shared_dir / "media" / "images").glob("*.jpg"))
    page.goto(demo + "/")
    page.locator("#upload-form input[type=file]").set_input_files(str(photo))
    page.locator("#upload-form button[type=submit]").click()
    page.wait_for_url("**/similar?image=*")  # a shareable address (issue 15 item 7)
    # an unrelated photo may fall under the similarity floor: "no close match"
    page.locator("#results article.hit, #no-close-match").first.wait_for()
    page.wait_for_function("() => document.querySelector('#example img').complete")
    assert page.evaluate("document.querySelector('#example img').naturalWidth") > 0
    page.wait_for_load_state("networkidle")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webui-similar.png"), full_page=True)
    assert not page.problems, page.problems


def test_hostile_title_is_text_in_the_browser(page, tmp_path):
    store = build_catalogue(tmp_path)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    with serve_in_thread(create_app(web_settings(tmp_path), store)) as url:
        page.goto(url + "/?q=object:car")
        titles = page.locator("article.hit h3.card-title").all_inner_texts()
        assert f"{XSS_TITLE} City" in titles
        page.goto(url + "/programmes/city")
        assert page.locator("#programme-title").inner_text() == f"{XSS_TITLE} City"
        assert page.locator("img[src=x]").count() == 0
    assert dialogs == []
    assert not [p for p in page.problems if "Content Security Policy" in p], page.problems


# Recorded in the page before any of its scripts run: a CSP violation may not reach the console.
CSP_LISTENER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def test_api_docs_page_renders_every_operation_offline_under_the_csp(page, tmp_path):
    store = build_catalogue(tmp_path)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.add_init_script(CSP_LISTENER)
    with serve_in_thread(create_app(web_settings(tmp_path), store)) as url:
        with urllib.request.urlopen(f"{url}/api/v1/openapi.json", timeout=10) as resp:
            doc = json.load(resp)
        n_ops = sum(1 for item in doc["paths"].values() for m in item if m != "servers")
        page.goto(url + "/")
        page.locator('nav a:text-is("API")').click()  # the UI's API link opens the docs
        page.wait_for_url("**/api/docs")
        ops = page.locator("#swagger-ui .opblock")
        ops.first.wait_for()
        page.wait_for_function(f"document.querySelectorAll('#swagger-ui .opblock').length"
                               f" === {n_ops}")
        tags = page.locator("#swagger-ui .opblock-tag").all_inner_texts()
        assert {t.split()[0] for t in tags} == {t["name"] for t in doc["tags"]}
        # Open the search operation: its parameters and the response example are drawn.
        page.locator("#operations-search-search .opblock-summary").click()
        page.locator("#operations-search-search .parameters").wait_for()
        assert "object:dog scene:beach" in page.locator(
            "#operations-search-search").inner_text()
        page.wait_for_load_state("networkidle")
        violations = page.evaluate("window.__csp")
    assert requests and all(r.startswith(url + "/") for r in requests), [
        r for r in requests if not r.startswith(url + "/")]
    assert violations == [], violations
    assert not page.problems, page.problems


@pytest.mark.media
def test_hard_exclusion_then_query_and_screenshots(page, demo):
    # object:person -object:car: no shot listed where car is present (issue 15 item 1).
    page.goto(demo + "/?q=" + urllib.parse.quote("object:person -object:car"))
    cards = page.locator("article.hit")
    cards.first.wait_for()
    shown = {cards.nth(i).get_attribute("data-hit-id") for i in range(cards.count())}
    with_car = api_ids(demo, "object:car")
    assert shown and with_car and not shown & with_car, (shown, with_car)
    assert shown == api_ids(demo, "object:person") - with_car
    page.wait_for_load_state("networkidle")
    save_screenshot(page, "search")
    # A 'then' query lists moment B under each hit.
    q = "object:car then object:person"  # in the demo: a car shot, then the cyclist's
    page.goto(demo + "/?q=" + urllib.parse.quote(q))
    hits = page.locator("article.hit")
    page.locator(".results-count").wait_for()
    assert hits.count() >= 1
    assert {hits.nth(i).get_attribute("data-hit-id") for i in range(hits.count())} <= api_ids(
        demo, q)
    assert page.locator("article.hit .card-then").count() == hits.count()
    # The player of the first excluded-car hit, with its searched-label tracks.
    page.goto(demo + "/?q=" + urllib.parse.quote("object:person -object:car"))
    page.locator("article.hit a.card-link").first.click()
    page.wait_for_url("**/episodes/**q=*")
    page.locator('#timeline[data-tracks="1"]').wait_for(state="attached")
    assert page.locator(".timeline-searched").get_attribute("data-term") == "object:person"
    page.locator('video#player[data-ready="1"]').wait_for(state="attached")
    page.wait_for_load_state("networkidle")
    save_screenshot(page, "player")
    assert not page.problems, page.problems
