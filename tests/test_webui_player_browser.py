"""The episode-bounded player in a real headless Chromium (Playwright + Debian's chromium, as
tests/test_webui_browser.py): one 29.97 fps file holds two episodes; the first one's player
stops within one frame of its end and never shows the second's frames, starts at the shot
with JavaScript off (a media fragment), answers J/K/L, space, frame steps and in/out marks,
its timeline is a keyboard slider whose value reads as drop-frame timecode, and a label
searched for is drawn as a track."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from test_webui_browser import browser, page  # noqa: F401  (fixtures)
from test_webui_catalogue import serve_in_thread, web_settings

from search.backends.sqlite.store import SqliteStore
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from tvindex.core.timecode import EpisodeClock
from webui import create_app

pytestmark = pytest.mark.browser
NTSC = Fraction(30000, 1001)
FRAME = float(1 / NTSC)
N_FRAMES = 240  # 8 s; episode a: frames [0, 120), episode b: [120, 240)
SPLIT = 120
OBJ = LabelSet("coco80", "sigmoid", ("person", "dog"))
FIRST_TC = "00:00:59;00"  # the file's clock: 00:00:59;29 is followed by 00:01:00;02


def make_webm(path: Path) -> None:
    """A tiny VP8 file at 30000/1001 fps that Chromium plays, one grey level per frame."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx", rate=NTSC)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for i in range(N_FRAMES):
            frame = av.VideoFrame.from_ndarray(
                np.full((48, 64, 3), i % 250, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def secs(frame: int) -> float:
    return round(float(frame / NTSC), 3)


def _shot(index: int, a: int, b: int, person: float, dog: float) -> SegmentTags:
    scores = np.array([[person, dog]], np.float32)
    return SegmentTags(index, secs(a), secs(b), round((secs(a) + secs(b)) / 2, 3),
                       {"coco80": aggregate(scores, 0.5)})


# shots as file frame ranges, with person and dog scores
SHOTS = {
    "ep-a": [(0, 40, 0.9, 0.02), (40, 80, 0.1, 0.8), (80, 120, 0.05, 0.7)],
    "ep-b": [(120, 180, 0.8, 0.01), (180, 240, 0.7, 0.03)],
}


@pytest.fixture(scope="module")
def player_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("player-browser")
    media = root / "reel.webm"
    make_webm(media)
    store = SqliteStore(root / "catalogue.sqlite", min_score=0.05, top_k=0)
    store.upsert_catalogue(
        [ProgrammeRecord("reel", "Reel", "", "test")],
        [EpisodeRecord("ep-a", "reel", "Part A", str(media), start_s=0.0, end_s=secs(SPLIT)),
         EpisodeRecord("ep-b", "reel", "Part B", str(media), start_s=secs(SPLIT),
                       end_s=secs(N_FRAMES))])
    store.register_label_sets([OBJ])
    for ep_id, shots in SHOTS.items():
        start = secs(shots[0][0])
        clock = EpisodeClock.for_episode(NTSC, FIRST_TC, start)
        segs = [_shot(i, a, b, p, d) for i, (a, b, p, d) in enumerate(shots)]
        frames = np.array([[p, d] for _, _, p, d in shots], np.float32)
        store.write_episode(EpisodeTags(
            ep_id, f"fp-{ep_id}", "v1", round(secs(shots[-1][1]) - start, 3), segs,
            {"coco80": aggregate(frames, 0.5)}, "shots", clock=clock))
    with serve_in_thread(create_app(web_settings(root), store)) as url:
        yield url


def _problems(pg) -> list[str]:
    """Console errors but the 404s of thumbnails this catalogue has none of."""
    return [p for p in pg.problems if "404" not in p]


def _ready(pg) -> None:
    pg.locator('video#player[data-ready="1"]').wait_for(state="attached")


def _t(pg) -> float:
    return pg.evaluate("document.getElementById('player').currentTime")


def _press_on_slider(pg, key: str, moved: str) -> None:
    """Press ``key`` and wait until the video's time satisfies ``moved`` (a JS expression
    over ``t``, its currentTime) and the slider's text has changed: the text follows the
    video's timeupdate/seeked events, which arrive after currentTime has moved."""
    before = pg.locator("#scrubber").get_attribute("aria-valuetext")
    pg.keyboard.press(key)
    pg.wait_for_function(
        "(before) => { const t = document.getElementById('player').currentTime; return ("
        + moved + ") && document.getElementById('scrubber').getAttribute('aria-valuetext')"
        " !== before; }", arg=before)


def test_stops_within_one_frame_of_the_episode_end(page, player_server):  # noqa: F811
    page.goto(player_server + "/episodes/ep-a?shot=2")
    _ready(page)
    src = page.locator("video#player").get_attribute("src")
    assert src.endswith(f"#t={secs(80):.3f},{secs(SPLIT):.3f}"), src
    assert abs(_t(page) - secs(80)) < FRAME
    assert page.evaluate("document.getElementById('player').controls") is False
    page.keyboard.press("Space")  # plays the last shot (1.3 s) to the episode's end
    page.wait_for_function("() => document.getElementById('player').dataset.ended === '1'",
                           timeout=20_000)
    page.wait_for_timeout(300)  # nothing moves after the stop
    end = secs(SPLIT)
    t = _t(page)
    assert page.evaluate("document.getElementById('player').paused")
    assert t <= end and end - t <= FRAME, (t, end)
    # Play again from the end: from the episode's start, not into episode b.
    page.keyboard.press("k")
    assert not _problems(page), page.problems


def test_starts_at_the_shot_without_javascript(browser, player_server):  # noqa: F811
    context = browser.new_context(java_script_enabled=False)
    try:
        pg = context.new_page()
        pg.goto(player_server + "/episodes/ep-b?shot=1")
        video = pg.locator("video#player")
        src = video.get_attribute("src")
        assert src.endswith(f"#t={secs(180):.3f},{secs(N_FRAMES):.3f}"), src
        assert video.get_attribute("controls") is not None  # the browser's own controls
        assert pg.locator("#player-controls").is_hidden()
        # Chromium honours the fragment: the loaded video sits at the shot's start.
        pg.wait_for_function("() => document.getElementById('player').readyState >= 1")
        at = pg.evaluate("document.getElementById('player').currentTime")
        assert abs(at - secs(180)) < 0.05, at
    finally:
        context.close()


def test_keys_jkl_space_frame_steps_and_marks(page, player_server):  # noqa: F811
    page.goto(player_server + "/episodes/ep-b?shot=0")
    _ready(page)
    start = _t(page)
    page.keyboard.press(".")
    page.wait_for_function(f"() => document.getElementById('player').currentTime > {start}")
    f0 = int((start + 0.0005) / FRAME + 1e-6)  # the frame showing (as player.js counts)
    f1 = _t(page) / FRAME
    assert abs(f1 - (f0 + 1.5)) < 0.1, (start, _t(page))
    page.keyboard.press(".")
    page.keyboard.press(",")
    page.wait_for_timeout(200)
    assert abs(_t(page) / FRAME - (f0 + 1.5)) < 0.1
    page.keyboard.press("i")
    assert page.locator("#player-marks").inner_text().startswith("In 00:01:03;")
    # L plays, again: faster; K pauses.
    page.keyboard.press("l")
    page.wait_for_function("() => !document.getElementById('player').paused")
    page.keyboard.press("l")
    assert page.evaluate("document.getElementById('player').playbackRate") == 2
    assert "2×" in page.locator("#player-rate").inner_text()
    page.wait_for_function(f"() => document.getElementById('player').currentTime > {start + 0.6}")
    page.keyboard.press("k")
    page.wait_for_function("() => document.getElementById('player').paused")
    page.keyboard.press("o")
    marks = page.locator("#player-marks")
    assert float(marks.get_attribute("data-out")) > float(marks.get_attribute("data-in"))
    # J goes backwards, K stops it; never before the episode's start.
    before = _t(page)
    page.keyboard.press("j")
    page.wait_for_function(f"() => document.getElementById('player').currentTime < {before - 0.2}")
    page.keyboard.press("k")
    assert _t(page) >= secs(SPLIT) - 1e-3
    # Space toggles.
    page.keyboard.press(" ")
    page.wait_for_function("() => !document.getElementById('player').paused")
    page.keyboard.press(" ")
    page.wait_for_function("() => document.getElementById('player').paused")
    # ? opens the list of keys.
    page.keyboard.press("?")
    assert page.locator("#keys-help").is_visible()
    page.keyboard.press("Escape")
    assert page.locator("#keys-help").is_hidden()
    assert not _problems(page), page.problems


def test_timeline_is_a_keyboard_slider_in_drop_frame_timecode(page, player_server):  # noqa: F811
    page.goto(player_server + "/episodes/ep-a")
    _ready(page)
    slider = page.locator("#scrubber")
    assert slider.get_attribute("role") == "slider"
    for _ in range(30):  # reachable with Tab alone
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "scrubber":
            break
    assert page.evaluate("document.activeElement.id") == "scrubber"
    _press_on_slider(page, "End", f"t > {secs(SPLIT) - 2 * FRAME}")
    t = _t(page)
    assert secs(SPLIT) - FRAME <= t <= secs(SPLIT)
    clock = EpisodeClock.for_episode(NTSC, FIRST_TC, 0.0)
    assert slider.get_attribute("aria-valuetext") == clock.timecode(t) == "00:01:03;01"
    assert page.locator("#player-time").inner_text().startswith("00:01:03;01")
    _press_on_slider(page, "Home", "t < 0.01")
    assert slider.get_attribute("aria-valuetext") == FIRST_TC
    _press_on_slider(page, "ArrowRight", "t > 0.9")  # one second
    assert slider.get_attribute("aria-valuetext") in ("00:00:59;29", "00:01:00;02")
    _press_on_slider(page, "Shift+ArrowRight", f"t > {_t(page)}")  # one frame
    assert slider.get_attribute("aria-valuetext") in ("00:01:00;02", "00:01:00;03")
    # A click far to the right of the slider stays inside the episode.
    box = slider.bounding_box()
    page.mouse.click(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2)
    page.wait_for_timeout(300)
    assert _t(page) <= secs(SPLIT)
    assert not _problems(page), page.problems


def test_a_track_for_each_searched_label(page, player_server):  # noqa: F811
    # From the results: the link carries the query, the player draws where each label is.
    page.goto(player_server + "/?q=object:dog&level=episode")
    hit = page.locator('article.hit[data-hit-id="ep-a"] a.card-link')
    href = hit.get_attribute("href")
    assert "shot=1" in href and "q=object" in href, href  # the best shot: dog 0.8
    page.goto(player_server + "/episodes/ep-a?shot=0&q=object:dog+-object:car+object:person")
    page.locator('#timeline[data-tracks="2"]').wait_for(state="attached")
    rows = page.locator(".timeline-searched")
    assert [rows.nth(i).get_attribute("data-term") for i in range(rows.count())] == [
        "object:dog", "object:person"]  # an excluded term draws no track
    dog = [float(x) for x in rows.nth(0).locator("rect").evaluate_all(
        "rs => rs.map(r => r.dataset.seek)")]
    person = [float(x) for x in rows.nth(1).locator("rect").evaluate_all(
        "rs => rs.map(r => r.dataset.seek)")]
    assert dog == [secs(40), secs(80)] and person == [secs(0)]  # ep-b's shots stay out
    rows.nth(0).locator("rect").nth(1).click(force=True)  # seeks there
    page.wait_for_function(
        f"() => Math.abs(document.getElementById('player').currentTime - {secs(80)}) < 0.05")
    assert not _problems(page), page.problems
