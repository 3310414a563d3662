"""Accessibility of the web UI (issue 15 item 9), in a real headless Chromium (Playwright +
Debian's chromium, as tests/test_webui_browser.py) and from the stylesheet itself: the search
page has an h1 and a skip link, the autocompletion is a combobox whose active option is
``aria-activedescendant``, text colours reach WCAG AA's 4.5:1 (computed from app.css and from
the rendered page), targets are at least 24 x 24 px, the query-language help fits a 390 px
screen, and the results can be reached and opened with the keyboard alone."""

from __future__ import annotations

import re

import pytest
from test_webui_browser import browser, page  # noqa: F401  (fixtures)
from test_webui_catalogue import REPO, build_catalogue, serve_in_thread, web_settings

from webui import create_app

CSS = REPO / "webui" / "static" / "app.css"
AA = 4.5


# ---- WCAG contrast from the stylesheet (no browser) ------------------------------------------
def _rgb(text: str) -> tuple[float, float, float] | None:
    text = text.strip().lower()
    m = re.fullmatch(r"#([0-9a-f]{3}|[0-9a-f]{6})", text)
    if m:
        h = m.group(1)
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    m = re.fullmatch(r"rgba?\(([^)]*)\)", text)
    if m:
        parts = [p.strip() for p in m.group(1).replace("/", ",").split(",")]
        if len(parts) == 4 and float(parts[3]) < 1:
            return None  # translucent: depends on what lies under it
        return tuple(float(p) for p in parts[:3])  # type: ignore[return-value]
    return {"#fff": (255, 255, 255), "white": (255, 255, 255)}.get(text)


def luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_ratios_luminance_reference():
    assert contrast((0, 0, 0), (255, 255, 255)) == pytest.approx(21)
    # the measurement of the old muted colour
    assert contrast(_rgb("#6b7285"), _rgb("#f5f6fa")) == pytest.approx(4.45, abs=0.01)


def _stylesheet() -> tuple[dict[str, str], list[tuple[str, dict[str, str]]]]:
    css = re.sub(r"/\*.*?\*/", "", CSS.read_text(), flags=re.DOTALL)
    rules: list[tuple[str, dict[str, str]]] = []
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        decls = {}
        for decl in body.split(";"):
            if ":" in decl:
                k, v = decl.split(":", 1)
                decls[k.strip()] = v.strip()
        rules.append((selector.strip(), decls))
    root = {k: v for sel, d in rules if sel == ":root" for k, v in d.items() if k.startswith("--")}
    return root, rules


def _resolve(value: str, root: dict[str, str]) -> str:
    m = re.fullmatch(r"var\((--[\w-]+)(?:,\s*([^)]*))?\)", value.strip())
    if m:
        return _resolve(root.get(m.group(1), m.group(2) or ""), root)
    return value


def test_text_colours_in_app_css_reach_aa():
    root, rules = _stylesheet()
    backgrounds = {"--bg", "--surface", "--accent-soft"}
    text_colours = {"--text", "--muted", "--accent-strong"}
    light = {name: _rgb(_resolve(root[name], root)) for name in backgrounds}
    # the light fills text sits on in rules that colour text with --muted
    for _, d in rules:
        bg = d.get("background") or d.get("background-color")
        if bg and "var(--muted)" in d.get("color", "") and _rgb(_resolve(bg, root)):
            light[bg] = _rgb(_resolve(bg, root))
    failures = []
    for t in text_colours:
        fg = _rgb(_resolve(root[t], root))
        for name, bg in light.items():
            ratio = contrast(fg, bg)
            if ratio < AA:
                failures.append((t, name, round(ratio, 2)))
    # every rule that sets both an opaque text colour and an opaque background
    for sel, d in rules:
        fg = _rgb(_resolve(d.get("color", ""), root))
        bg_text = d.get("background-color") or d.get("background") or ""
        bg = _rgb(_resolve(bg_text, root))
        if fg and bg and contrast(fg, bg) < AA:
            failures.append((sel, d["color"], bg_text, round(contrast(fg, bg), 2)))
    assert not failures, failures
    assert contrast(_rgb(_resolve(root["--muted"], root)),
                    _rgb(_resolve(root["--bg"], root))) >= AA


# ---- in the browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("a11y")
    store = build_catalogue(root)
    with serve_in_thread(create_app(web_settings(root), store)) as url:
        yield url


# The effective background of an element: the first opaque background colour up its tree.
CONTRAST_JS = """
(sel) => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const out = [];
  for (const el of document.querySelectorAll(sel)) {
    if (!el.offsetParent || !el.textContent.trim()) continue;
    let bg = null;
    for (let n = el; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) { bg = c.slice(0, 3); break; }
      if (c.length === 4 && c[3] > 0) { bg = null; break; }  // translucent: skip
      if (getComputedStyle(n).backgroundImage !== 'none') { bg = null; break; }
    }
    if (!bg) continue;
    const fg = parse(getComputedStyle(el).color).slice(0, 3);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    out.push([el.className || el.tagName, (hi + 0.05) / (lo + 0.05)]);
  }
  return out;
}
"""


@pytest.mark.browser
def test_search_page_h1_skip_link_and_rendered_contrast(page, site):  # noqa: F811
    page.goto(site + "/?q=object:dog")
    page.locator("article.hit").first.wait_for()
    assert page.locator("h1").count() == 1
    assert page.locator("h1").inner_text().strip()
    # The skip link is the first thing Tab reaches, shows itself, and moves focus to main.
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement.className")
    assert focused == "skip-link"
    box = page.locator(".skip-link").bounding_box()
    assert box["y"] >= 0 and box["height"] >= 24
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    ratios = page.evaluate(CONTRAST_JS, ".muted, .card-sub, .card-meta, .effective, "
                           ".filter span, .syntax-help summary, .footer, .results-count, "
                           ".chip, .upload-note, .track-label")
    assert ratios, "no text measured"
    low = [(cls, round(r, 2)) for cls, r in ratios if r < AA]
    assert not low, low


@pytest.mark.browser
def test_autocomplete_is_a_combobox_with_an_active_descendant(page, site):  # noqa: F811
    page.goto(site + "/")
    box = page.locator("#q")
    assert box.get_attribute("role") == "combobox"
    assert box.get_attribute("aria-controls") == "suggestions"
    box.press_sequentially("object:d", delay=30)
    page.locator("#suggestions li[role=option]").first.wait_for(state="visible")
    assert box.get_attribute("aria-expanded") == "true"
    assert box.get_attribute("aria-activedescendant") is None
    box.press("ArrowDown")
    active = box.get_attribute("aria-activedescendant")
    assert active == "suggestion-0"
    assert page.locator(f"#{active}").get_attribute("aria-selected") == "true"
    box.press("ArrowDown")
    if page.locator("#suggestions li").count() > 1:
        assert box.get_attribute("aria-activedescendant") == "suggestion-1"
    box.press("Escape")
    assert box.get_attribute("aria-activedescendant") is None
    assert box.get_attribute("aria-expanded") == "false"


TARGETS_JS = """
(sel) => [...document.querySelectorAll(sel)].filter(el => el.offsetParent).map(el => {
  const r = el.getBoundingClientRect();
  return [el.className || el.tagName, r.width, r.height];
})
"""


@pytest.mark.browser
def test_targets_are_at_least_24px(page, site):  # noqa: F811
    page.goto(site + "/?q=object:dog")
    page.locator("article.hit").first.wait_for()
    sizes = page.evaluate(TARGETS_JS, ".similar-action, .button, .chip-link, .pager a, "
                          ".export-menu summary, .segment span, .mainnav a, .skip-link:focus")
    assert any(cls.startswith("similar-action") for cls, _, _ in sizes)
    small = [(c, w, h) for c, w, h in sizes if w < 24 or h < 24]
    assert not small, small


@pytest.mark.browser
def test_query_help_fits_390px(browser, site):  # noqa: F811
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        pg = context.new_page()
        pg.goto(site + "/?q=object:dog")
        pg.locator(".syntax-help summary").click()
        help_box = pg.locator(".syntax-help dl")
        help_box.wait_for(state="visible")
        overflow = pg.evaluate("() => document.documentElement.scrollWidth")
        assert overflow <= 390, overflow
        clipped = pg.evaluate("""() => [...document.querySelectorAll('.syntax-help dt, .syntax-help dd, .syntax-help code')]
          .filter(el => { const r = el.getBoundingClientRect(); return r.right > 390.5 || r.left < -0.5
                          || el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflow !== 'visible'; })
          .map(el => el.textContent.slice(0, 40))""")
        assert clipped == [], clipped
        assert pg.locator("h1").count() == 1
    finally:
        context.close()


@pytest.mark.browser
def test_results_by_keyboard_alone(page, site):  # noqa: F811
    page.goto(site + "/?q=object:dog")
    hits = page.locator("article.hit")
    hits.first.wait_for()
    ids = [hits.nth(i).get_attribute("data-hit-id") for i in range(hits.count())]
    reached: list[str] = []
    for _ in range(80):
        page.keyboard.press("Tab")
        info = page.evaluate("""() => { const el = document.activeElement;
            const hit = el.closest('article.hit');
            const style = getComputedStyle(el);
            return [hit ? hit.dataset.hitId : null, el.className, style.outlineStyle,
                    parseFloat(style.outlineWidth)]; }""")
        hit, cls, outline, width = info
        if hit and cls == "card-link":
            assert outline != "none" and width >= 2, info  # the focus is visible
            reached.append(hit)
            if len(reached) == len(ids):
                break
    assert reached == ids  # in the order shown
    # Enter opens the focused result (the last): its player.
    page.keyboard.press("Enter")
    page.wait_for_url("**/episodes/**")
    assert page.locator("h1").count() == 1
