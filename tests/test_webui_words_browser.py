"""Words in the web UI, in a real headless Chromium (issue 17): the player's transcript panel
follows playback, a click on a line plays from it, the in-episode search keeps and marks the
matching lines; on-screen text shows on the shot cards; search result cards show the
highlighted snippet. The clip is a generated VP8 WebM (PyAV), the words are written through
the store (no models)."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from test_webui_browser import CSP_LISTENER, browser, page  # noqa: F401 - fixtures
from test_webui_catalogue import jpeg, serve_in_thread, web_settings

from search.backends.sqlite.store import SqliteStore
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from tvindex.core.words import EpisodeWords, TextSegment
from webui import create_app

pytestmark = pytest.mark.browser
OBJ = LabelSet("coco80", "sigmoid", ("person", "dog", "car", "bicycle"))
LINES = [(1.0, 3.0, "speech", "Bon dia a tothom", "ca"),
         (4.0, 6.0, "subtitles", "Obrim el pavelló municipal", "ca"),
         (8.0, 10.0, "speech", "L'alcaldessa parla <b>ara</b>", "ca")]


def make_clip(path: Path, seconds: int = 12, fps: int = 10) -> None:
    """A small playable WebM: a grey ramp that changes every second."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 90, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(seconds * fps):
            img = np.full((90, 160, 3), (i // fps) * 20 % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def build(root: Path) -> SqliteStore:
    clip = root / "media" / "n1.webm"
    clip.parent.mkdir(parents=True)
    make_clip(clip)
    store = SqliteStore(root / "catalogue.sqlite", top_k=0)
    store.upsert_catalogue([ProgrammeRecord("news", "Notícies", "", "news")],
                           [EpisodeRecord("n1", "news", "Dilluns", str(clip), dt.date(2024, 1, 8))])
    store.register_label_sets([OBJ])
    objs = [[0.9, 0, 0, 0], [0, 0.9, 0, 0], [0, 0, 0.9, 0]]
    segments = [SegmentTags(i, 4.0 * i, 4.0 * i + 4, 4.0 * i + 2,
                            {"coco80": aggregate(np.array([o], np.float32), 0.5)},
                            thumbnail=jpeg((60 * i, 120, 200)))
                for i, o in enumerate(objs)]
    store.write_episode(EpisodeTags("n1", "fp", "v1", 12.0, segments,
                                    {"coco80": aggregate(np.array(objs, np.float32), 0.5)},
                                    "shots"))
    for source in ("speech", "subtitles"):
        store.write_words(EpisodeWords("n1", source, "v1", [
            TextSegment(a, b, s, text, lang, 0.9) for a, b, s, text, lang in LINES
            if s == source]))
    store.write_words(EpisodeWords("n1", "screen", "v1", [
        TextSegment(8.5, 11.0, "screen", "Núria Puigcercós · alcaldessa", None, 0.97)]))
    return store


def test_transcript_panel_follows_playback_seeks_and_searches(page, tmp_path):  # noqa: F811
    store = build(tmp_path)
    page.add_init_script(CSP_LISTENER)
    settings = web_settings(tmp_path)
    with serve_in_thread(create_app(settings, store)) as url:
        page.goto(url + "/episodes/n1")
        panel = page.locator("#transcript")
        page.wait_for_function("document.getElementById('transcript').dataset.ready === '1'")
        lines = panel.locator(".transcript-line")
        assert lines.count() == 3
        texts = panel.locator(".transcript-text").all_inner_texts()
        assert texts == [t for _, _, _, t, _ in LINES]  # hostile markup stays text
        assert page.locator(".transcript-text b").count() == 0
        # On-screen text on the card of the shot it overlaps (shot 2: 8-12 s) only.
        assert page.locator("#shot-2").inner_text().count("Núria Puigcercós · alcaldessa") == 1
        assert "alcaldessa" not in page.locator("#shot-0").inner_text()

        # Click-to-seek: the video jumps to the line and the line becomes the current one.
        video = page.locator("#player")
        page.wait_for_function("document.getElementById('player').readyState >= 1")
        lines.nth(2).locator("button").click()
        page.wait_for_function("Math.abs(document.getElementById('player').currentTime - 8)"
                               " < 0.6")
        assert "is-active" in (lines.nth(2).get_attribute("class") or "")
        # Following playback: seeking elsewhere moves the highlight.
        video.evaluate("v => { v.pause(); v.currentTime = 4.5; }")
        page.wait_for_function("document.querySelectorAll('.transcript-line')[1]"
                               ".classList.contains('is-active')")
        assert lines.nth(1).get_attribute("aria-current") == "true"
        assert "is-active" not in (lines.nth(2).get_attribute("class") or "")

        # In-episode search: accents and case ignored, matches marked, others hidden.
        page.locator("#transcript-search").fill("PAVELLO")
        page.wait_for_function("document.querySelectorAll('.transcript-line:not([hidden])')"
                               ".length === 1")
        assert panel.locator(".transcript-line:not([hidden]) mark").inner_text() == "pavelló"
        assert page.locator("#transcript-count").inner_text() == "1 of 3 lines"
        page.locator("#transcript-search").fill("")
        page.wait_for_function("document.querySelectorAll('.transcript-line:not([hidden])')"
                               ".length === 3")
        # The source switches: subtitles off leaves the speech.
        page.locator(".transcript-source-toggle[value=subtitles]").uncheck()
        assert panel.locator(".transcript-line:not([hidden])").count() == 2

        # A word search: the result card shows the highlighted snippet and its time.
        page.goto(url + '/?q=said:"alcaldessa parla"')
        snippet = page.locator("article.hit .card-snippet").first
        assert snippet.locator("mark").all_inner_texts() == ["alcaldessa", "parla"]
        assert "<b>ara</b>" in snippet.inner_text()
        violations = page.evaluate("window.__csp")
    assert violations == [], violations
    assert not page.problems, page.problems
