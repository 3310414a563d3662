"""The facets side panel in a real headless Chromium (the Playwright helpers of
``test_webui_browser``): clicking a count narrows the results to that count, by mouse, by
keyboard alone, and with JavaScript off (the counts are plain links)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from test_facets import fill
from test_webui_browser import CHROMIUM_ARGS, browser  # noqa: F401  (fixture)
from test_webui_catalogue import serve_in_thread, web_settings

from search.backends.sqlite.store import SqliteStore
from webui import create_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("facets-web")
    store = SqliteStore(root / "catalogue.sqlite", min_score=0.05, top_k=0)
    fill(store)
    with serve_in_thread(create_app(web_settings(root), store)) as url:
        yield url


def _has(text: str):
    """A wait_for_url predicate: the (decoded) URL holds ``text``."""
    return lambda url: text in unquote_plus(url)


def _count(pg) -> int:
    return int(pg.locator(".results-count strong").inner_text())


def _open(browser, **ctx):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 860}, **ctx)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    return context, pg


def test_clicking_a_facet_narrows_the_results(browser, site):  # noqa: F811
    context, pg = _open(browser)
    pg.goto(site + "/?q=object%3Aperson")
    assert _count(pg) == 5
    panel = pg.locator("aside.facets")
    assert panel.get_by_role("heading", name="Refine").is_visible()
    city = panel.locator("[data-facet=programme] a", has_text="City news")
    assert city.locator(".facet-count").inner_text() == "2"
    city.click()
    pg.wait_for_url(_has("programme:city"))
    assert _count(pg) == 2
    assert pg.locator("#results .card").count() == 2
    # a co-occurring label narrows the same way; the query's own label is not offered
    labels = pg.locator("aside.facets [data-facet=label] a")
    assert "coco80:person" not in [labels.nth(i).get_attribute("data-value")
                                   for i in range(labels.count())]
    bicycle = pg.locator("aside.facets [data-facet=label] a[data-value='coco80:bicycle']")
    want = int(bicycle.locator(".facet-count").inner_text())
    bicycle.click()
    pg.wait_for_url(_has("coco80:bicycle"))
    assert _count(pg) == want == 1
    context.close()


def test_facets_by_keyboard_alone(browser, site):  # noqa: F811
    context, pg = _open(browser)
    pg.goto(site + "/?q=object%3Aperson")
    year = pg.locator("aside.facets [data-facet=year] a").first
    want = int(year.locator(".facet-count").inner_text())
    for _ in range(200):  # Tab until the year facet has the focus
        pg.keyboard.press("Tab")
        if pg.evaluate("document.activeElement && document.activeElement.closest("
                       "'[data-facet=year]') !== null"):
            break
    else:
        pytest.fail("the year facet cannot be reached with Tab")
    pg.keyboard.press("Enter")
    pg.wait_for_url(_has("after:2021-01-01 before:2021-12-31"))
    assert _count(pg) == want == 4
    context.close()


def test_facets_without_javascript(browser, site):  # noqa: F811
    context, pg = _open(browser, java_script_enabled=False)
    pg.goto(site + "/?q=object%3Aperson")
    pg.locator("aside.facets [data-facet=genre] a[data-value='news']").click()
    pg.wait_for_url(_has("genre:news"))
    assert _count(pg) == 2
    context.close()
