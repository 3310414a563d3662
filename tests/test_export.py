"""Timecodes stored per episode and shown with every time, and exports (CSV, CMX 3600 EDL,
OpenTimelineIO, JSON) parsed back frame-exactly: from the store, the API and the CLI.

The catalogue is made from real files generated here with PyAV (25 fps; 29.97 with a
drop-frame ``timecode`` tag, whole and as an episode starting inside the file; 23.976; and a
variable-frame-rate file), probed as the indexer probes them; the tags are written by hand.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from test_timecode import make_video, vfr_pts
from test_webui_catalogue import API_KEY, web_settings

from indexer.media import probe
from search.backends.sqlite.store import SqliteStore
from search.engine import run_search
from search.export import exporter, list_formats
from search.export.collect import episode_clips, search_clips
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from tvindex.core.timecode import EpisodeClock, frames_to_timecode, timecode_to_frames
from webui import create_app

OBJ = LabelSet("coco80", "sigmoid", ("person", "dog"))
NTSC = Fraction(30000, 1001)
FILM = Fraction(24000, 1001)


@dataclass(frozen=True)
class Episode:
    """A test episode: its file, where it starts in it, its shots as file frame ranges
    [a, b) (or millisecond times for the VFR file) and what its timecodes must be."""

    id: str
    file: str
    start_frame: int  # the episode's first frame in its file
    shots: tuple[tuple[int, int], ...]  # file frames (VFR: file milliseconds)
    rate: Fraction
    first_tc: str  # the timecode of the episode's first frame
    drop: bool
    vfr: bool = False

    def seconds(self, n: int) -> float:
        """File seconds of file frame ``n`` (VFR: of millisecond ``n``), kept to the
        millisecond as the indexer keeps them."""
        return round(n / 1000 if self.vfr else float(n / self.rate), 3)

    def frames_from_start(self, n: int) -> int:
        """Frames from the episode's start to file frame ``n`` (VFR: the nominal frame of
        millisecond ``n``)."""
        if self.vfr:
            return round(Fraction(n, 1000) * self.rate) - self.start_frame
        return n - self.start_frame

    def label(self, n: int) -> str:
        start = timecode_to_frames(self.first_tc, self.rate, self.drop)
        return frames_to_timecode(start + self.frames_from_start(n), self.rate, self.drop)


EPISODES = (
    Episode("pal", "pal.mp4", 0, ((0, 13), (13, 37), (37, 50)), Fraction(25), "00:00:00:00",
            False),
    # 00:00:59;00 + 29 frames = 00:00:59;29; the next is 00:01:00;02 (drop-frame)
    Episode("ntsc", "ntsc.mov", 0, ((0, 29), (29, 31), (31, 60), (60, 90)), NTSC,
            "00:00:59;00", True),
    # the same file from frame 30 on: an episode inside a file keeps the file's timecode
    Episode("ntsc-b", "ntsc.mov", 30, ((30, 45), (45, 90)), NTSC, "00:01:00;02", True),
    Episode("film", "film.mp4", 0, ((0, 24), (24, 47), (47, 48)), FILM, "00:00:00:00", False),
    # a variable rate: nominal 25 fps timecodes (shots at the file's real times, in ms)
    Episode("vfr", "vfr.mkv", 0, ((0, 80), (80, 200), (200, 740), (740, 1320)), Fraction(25),
            "00:00:00:00", False, vfr=True),
)
BY_ID = {e.id: e for e in EPISODES}


def _shot(index: int, start_s: float, end_s: float, dog: float) -> SegmentTags:
    return SegmentTags(index, start_s, end_s, round((start_s + end_s) / 2, 3),
                       {"coco80": aggregate(np.array([[0.1, dog]], np.float32), 0.5)})


def build(store, media: Path) -> None:
    """The programme ``tc`` with the five episodes, their clocks from probing their files."""
    store.upsert_catalogue(
        [ProgrammeRecord("tc", "Timecodes", "", "test")],
        [EpisodeRecord(e.id, "tc", e.id.upper(), str(media / e.file),
                       start_s=e.seconds(e.start_frame) if e.start_frame else None)
         for e in EPISODES])
    store.register_label_sets([OBJ])
    for k, e in enumerate(EPISODES):
        info = probe(media / e.file)  # the indexer's one probe
        start_s = e.seconds(e.start_frame) if e.start_frame else None
        clock = EpisodeClock.for_episode(info.frame_rate, info.timecode, start_s, info.vfr)
        shots = [_shot(i, e.seconds(a), e.seconds(b), 0.9 - 0.05 * k - 0.01 * i)
                 for i, (a, b) in enumerate(e.shots)]
        frames = np.concatenate([[[0.1, s.stats["coco80"].score[1]]] for s in shots])
        store.write_episode(EpisodeTags(
            e.id, f"fp-{e.id}", "v1", round(shots[-1].end_s - (start_s or 0.0), 3), shots,
            {"coco80": aggregate(frames.astype(np.float32), 0.5)}, "shots", clock=clock))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tc-media")
    make_video(d / "pal.mp4", 25, 50)
    make_video(d / "ntsc.mov", NTSC, 90, "00:00:59;00")
    make_video(d / "film.mp4", FILM, 48)
    make_video(d / "vfr.mkv", None, len(vfr_pts()), pts_ms=vfr_pts())
    return d


@pytest.fixture()
def store(tmp_path: Path, media: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "catalogue.sqlite", min_score=0.05, top_k=0)
    build(s, media)
    return s


def expected_shots(episode: Episode) -> list[dict]:
    return [{"shot_id": f"{episode.id}@{i}", "tc_in": episode.label(a),
             "tc_out": episode.label(b), "frame_in": episode.frames_from_start(a),
             "frame_out": episode.frames_from_start(b)} for i, (a, b) in enumerate(episode.shots)]


# --- stored clocks and timecodes beside the seconds -------------------------------------------
def test_each_episode_keeps_its_clock(store):
    for e in EPISODES:
        d = store.episode(e.id).to_dict()
        assert d["frame_rate"] == (str(e.rate.numerator) if e.rate.denominator == 1
                                   else f"{e.rate.numerator}/{e.rate.denominator}")
        assert (d["start_tc"], d["drop_frame"], d["vfr"]) == (e.first_tc, e.drop, e.vfr)
        assert d["end_tc"] == e.label(e.shots[-1][1])
    clocks = store.episode_clocks(["ntsc", "pal", "nope"])
    assert set(clocks) == {"ntsc", "pal"} and clocks["ntsc"].start_tc == "00:00:59;00"


def test_search_hits_carry_timecodes(store):
    page = run_search(store, "object:dog", "shot", 50)
    assert page.total == sum(len(e.shots) for e in EPISODES)
    for hit in page.hits:
        e = BY_ID[hit.episode_id]
        index = int(hit.id.rpartition("@")[2])
        a, b = e.shots[index]
        assert (hit.start_tc, hit.end_tc) == (e.label(a), e.label(b)), hit.id
        assert hit.to_dict()["start_tc"] == hit.start_tc
    episodes = run_search(store, "object:dog", "episode", 10)
    ntsc = next(h for h in episodes.hits if h.id == "ntsc")
    assert ntsc.best_shot is not None and ntsc.best_shot["start_tc"] == "00:00:59;00"


def test_an_episode_indexed_before_clocks_were_kept_has_none(tmp_path, media):
    s = SqliteStore(tmp_path / "old.sqlite", min_score=0.05, top_k=0)
    s.upsert_catalogue([ProgrammeRecord("p", "P")], [EpisodeRecord("e", "p", "E", "/x.mp4")])
    s.register_label_sets([OBJ])
    s.write_episode(EpisodeTags("e", "fp", "v1", 1.0, [_shot(0, 0.0, 1.0, 0.9)],
                                {"coco80": aggregate(np.array([[0.1, 0.9]], np.float32), 0.5)}))
    d = s.episode("e").to_dict()
    assert d["frame_rate"] is None and d["start_tc"] is None and d["end_tc"] is None
    hit = run_search(s, "object:dog", "shot", 5).hits[0]
    assert hit.start_tc is None and hit.start_s == 0.0
    # exports still work, at a nominal 25 fps from 00:00:00:00
    clip = episode_clips(s, "e").clips[0]
    assert (clip.tc_in, clip.tc_out) == ("00:00:00:00", "00:00:01:00")


# --- exports parsed back ----------------------------------------------------------------------
@pytest.mark.parametrize("episode", EPISODES, ids=lambda e: e.id)
def test_csv_round_trip(store, episode):
    clips = episode_clips(store, episode.id)
    rows = list(csv.DictReader(io.StringIO(exporter("csv").render(clips).decode("utf-8"))))
    got = [{k: (int(r[k]) if k.startswith("frame_") else r[k]) for k in
            ("shot_id", "tc_in", "tc_out", "frame_in", "frame_out")} for r in rows]
    assert got == expected_shots(episode)
    assert {r["drop_frame"] for r in rows} == {"true" if episode.drop else "false"}
    for row, (a, b) in zip(rows, episode.shots, strict=True):
        assert float(row["start_s"]) == episode.seconds(a)
        assert float(row["end_s"]) == episode.seconds(b)


@pytest.mark.parametrize("episode", EPISODES, ids=lambda e: e.id)
def test_edl_round_trip_through_the_cmx_3600_reader(store, media, episode):
    text = exporter("edl").render(episode_clips(store, episode.id)).decode("utf-8")
    assert ("FCM: DROP FRAME" in text) is episode.drop
    timeline = otio.adapters.read_from_string(text, "cmx_3600", rate=float(episode.rate))
    (track,) = timeline.tracks
    clips = list(track)
    assert all(isinstance(c, otio.schema.Clip) for c in clips)  # no gaps: records continue
    expected = expected_shots(episode)
    assert len(clips) == len(expected)
    first = timecode_to_frames(episode.first_tc, episode.rate, episode.drop)
    for clip, want in zip(clips, expected, strict=True):
        start = clip.source_range.start_time
        assert start.to_frames() == first + want["frame_in"]
        assert clip.source_range.duration.to_frames() == want["frame_out"] - want["frame_in"]
        assert otio.opentime.to_timecode(start, float(episode.rate)) == want["tc_in"]
        assert clip.metadata["cmx_3600"]["reel"] == episode.id.replace("-", "_")
        assert clip.name.startswith(want["shot_id"] + " Timecodes - ")
        assert clip.media_reference.target_url == str(media / episode.file)
    # the record side runs on from 01:00:00:00 without gaps
    lines = [ln.split() for ln in text.splitlines() if ln[:3].isdigit()]
    assert lines[0][6] == ("01:00:00;00" if episode.drop else "01:00:00:00")
    for prev, nxt in itertools.pairwise(lines):
        assert prev[7] == nxt[6]


def test_otio_round_trip_of_a_search_with_mixed_rates(store, media):
    clips = search_clips(store, "object:dog", limit=100)
    text = exporter("otio").render(clips).decode("utf-8")
    timeline = otio.adapters.read_from_string(text)  # the .otio JSON reader
    (track,) = timeline.tracks
    assert timeline.name == "tvindex search: object:dog"
    assert [c.name for c in track] == [c.shot_id for c in clips.clips]
    for item in track:
        e = BY_ID[item.metadata["tvindex"]["episode_id"]]
        index = int(item.name.rpartition("@")[2])
        want = expected_shots(e)[index]
        first = timecode_to_frames(e.first_tc, e.rate, e.drop)
        rate = item.source_range.start_time.rate
        assert rate == float(e.rate)
        assert item.source_range.start_time.to_frames() == first + want["frame_in"]
        assert item.source_range.end_time_exclusive().to_frames() == first + want["frame_out"]
        assert otio.opentime.to_timecode(item.source_range.start_time, rate) == want["tc_in"]
        assert item.metadata["tvindex"]["tc_in"] == want["tc_in"]
        assert list(item.metadata["tvindex"]["labels"]) == ["coco80:dog"]
        available = item.media_reference.available_range
        assert available.start_time.to_frames() == first
        assert available.contains(item.source_range.start_time)
        assert item.media_reference.target_url == (media / e.file).as_uri()


def test_json_export(store):
    body = json.loads(exporter("json").render(episode_clips(store, "ntsc-b")))
    assert body["kind"] == "episode" and body["episode_id"] == "ntsc-b"
    got = [{k: c[k] for k in ("shot_id", "tc_in", "tc_out", "frame_in", "frame_out")}
           for c in body["clips"]]
    assert got == expected_shots(BY_ID["ntsc-b"])
    assert body["clips"][0]["episode_start_tc"] == "00:01:00;02"


def test_exports_escape_what_they_must(tmp_path):
    s = SqliteStore(tmp_path / "c.sqlite", min_score=0.05, top_k=0)
    s.upsert_catalogue([ProgrammeRecord("p", "=HYPERLINK(\"x\")\nTitle")],
                       [EpisodeRecord("e 1/é", "p", "-2+3", "/m/a b.mp4")])
    s.register_label_sets([OBJ])
    s.write_episode(EpisodeTags(
        "e 1/é", "fp", "v1", 1.0, [_shot(0, 0.0, 1.0, 0.9)],
        {"coco80": aggregate(np.array([[0.1, 0.9]], np.float32), 0.5)},
        clock=EpisodeClock.for_episode(25)))
    clips = episode_clips(s, "e 1/é")
    row = next(csv.DictReader(io.StringIO(exporter("csv").render(clips).decode())))
    assert row["programme_title"].startswith("'=") and row["episode_title"] == "'-2+3"
    edl = exporter("edl").render(clips).decode()
    assert "\nTitle" not in edl and "\n001  e_1__    V  " in edl  # one line; a safe reel
    assert exporter("csv").filename(clips) == "tvindex-e-1.csv"


# --- the API ----------------------------------------------------------------------------------
@pytest.fixture()
def client(tmp_path, store):
    return create_app(web_settings(tmp_path, api_key=API_KEY), store).test_client()


def test_api_search_download_in_every_format(client):
    types = {"csv": "text/csv", "edl": "text/plain", "otio": "application/vnd.opentimelineio+json",
             "json": "application/json"}
    for fmt in list_formats():
        r = client.get(f"/api/v1/search?q=object:dog&format={fmt}&limit=3")
        assert r.status_code == 200, r.get_data(as_text=True)
        assert r.mimetype == types[fmt]
        assert r.headers["Content-Disposition"] == (
            f'attachment; filename="tvindex-search-object-dog.{fmt}"')
    r = client.get("/api/v1/search?q=object:dog&format=otio&limit=3")
    timeline = otio.adapters.read_from_string(r.get_data(as_text=True))
    assert len(list(timeline.tracks[0])) == 3
    first = next(iter(timeline.tracks[0]))
    assert first.media_reference.target_url == "http://localhost/media/pal"  # a URL, no path


def test_api_episode_shots_json_and_edl(client):
    r = client.get("/api/v1/episodes/ntsc/shots")
    assert r.status_code == 200 and "Content-Disposition" not in r.headers
    assert [c["tc_in"] for c in r.get_json()["clips"]] == [
        s["tc_in"] for s in expected_shots(BY_ID["ntsc"])]
    r = client.get("/api/v1/episodes/ntsc/shots?format=edl")
    assert r.headers["Content-Disposition"] == 'attachment; filename="tvindex-ntsc.edl"'
    timeline = otio.adapters.read_from_string(r.get_data(as_text=True), "cmx_3600",
                                              rate=float(NTSC))
    starts = [c.source_range.start_time.to_frames() for c in timeline.tracks[0]]
    first = timecode_to_frames("00:00:59;00", NTSC)
    assert starts == [first + s["frame_in"] for s in expected_shots(BY_ID["ntsc"])]


def test_api_times_carry_timecodes(client):
    body = client.get("/api/v1/search?q=object:dog&limit=50").get_json()
    ntsc = [h for h in body["hits"] if h["episode_id"] == "ntsc"]
    assert [h["start_tc"] for h in sorted(ntsc, key=lambda h: h["start_s"])] == [
        s["tc_in"] for s in expected_shots(BY_ID["ntsc"])]
    ep = client.get("/api/v1/episodes/ntsc-b").get_json()
    assert (ep["frame_rate"], ep["start_tc"], ep["drop_frame"]) == ("30000/1001",
                                                                     "00:01:00;02", True)
    timeline = client.get("/api/v1/episodes/film/timeline").get_json()
    assert [s["start_tc"] for s in timeline["segments"]] == [
        s["tc_in"] for s in expected_shots(BY_ID["film"])]
    shot = client.get("/api/v1/shots/ntsc@2").get_json()
    want = expected_shots(BY_ID["ntsc"])[2]
    assert (shot["start_tc"], shot["end_tc"]) == (want["tc_in"], want["tc_out"])
    assert (want["tc_in"], want["tc_out"]) == ("00:01:00;03", "00:01:01;02")


@pytest.mark.parametrize("query", [
    "format=xls&q=object:dog", "format=csv&q=object:dog&level=episode",
    "format=csv&q=object:dog&offset=5", "format=csv&q=", "format=csv&q=object:dog&limit=5001"])
def test_api_refuses_bad_exports(client, query):
    r = client.get(f"/api/v1/search?{query}")
    assert r.status_code == 400 and r.mimetype == "application/problem+json"


def test_api_unknown_episode_export_is_404(client):
    assert client.get("/api/v1/episodes/nope/shots?format=csv").status_code == 404


# --- the command line -------------------------------------------------------------------------
def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvindex.cli", *args, "--data-dir",
                           str(data_dir)], capture_output=True, text=True, timeout=120,
                          check=False)


def test_cli_export_status_and_search_show_timecodes(tmp_path, store):
    out = tmp_path / "ntsc.edl"
    r = cli(tmp_path, "export", "episode", "ntsc", "--format", "edl", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote 4 shot(s)" in r.stderr
    timeline = otio.adapters.read_from_file(str(out), "cmx_3600", rate=float(NTSC))
    assert len(list(timeline.tracks[0])) == 4
    r = cli(tmp_path, "export", "search", "object:dog", "--format", "csv", "--limit", "2")
    assert r.returncode == 0, r.stderr
    assert len(list(csv.DictReader(io.StringIO(r.stdout)))) == 2
    r = cli(tmp_path, "export", "episode", "nope", "--format", "json")
    assert r.returncode == 2 and "unknown episode 'nope'" in r.stderr
    r = cli(tmp_path, "search", "object:dog", "--limit", "20")
    assert "[00:00:59;29-00:01:00;03, frame at 00:01:00;02]" in r.stdout, r.stdout
    r = cli(tmp_path, "search", "object:dog", "--level", "episode")
    assert "best shot ntsc-b@0 [00:01:00;02-00:01:00;17]" in r.stdout, r.stdout
    r = cli(tmp_path, "status")
    assert "starts 00:01:00;02 at 30000/1001 fps DF" in r.stdout, r.stdout
    assert "(variable rate: nominal)" in r.stdout


# --- Elasticsearch keeps the same clocks ------------------------------------------------------
def test_elasticsearch_keeps_the_same_clocks(es_config, store, media):
    from search.backends.elasticsearch.store import EsStore

    es = EsStore(es_config, min_score=0.05, top_k=0)
    try:
        build(es, media)
        for e in EPISODES:
            assert es.episode(e.id).to_dict() | {"top_labels": None} == (
                store.episode(e.id).to_dict() | {"top_labels": None})
        assert es.episode_clocks([e.id for e in EPISODES]) == store.episode_clocks(
            [e.id for e in EPISODES])
        tcs = {h.id: (h.start_tc, h.end_tc, h.time_tc)
               for h in run_search(es, "object:dog", "shot", 50).hits}
        assert tcs == {h.id: (h.start_tc, h.end_tc, h.time_tc)
                       for h in run_search(store, "object:dog", "shot", 50).hits}
    finally:
        es.close()


# --- the pages --------------------------------------------------------------------------------
def test_pages_show_timecodes_and_offer_exports(client):
    html = client.get("/?q=object:dog").get_data(as_text=True)
    assert '<span class="tc" title="0:01.0 into the file">00:00:59;29</span>' in html
    links = [ln.split('"')[0] for ln in html.split('href="/api/v1/search?')[1:]]
    assert sorted(ln.rpartition("format=")[2] for ln in links) == sorted(list_formats())
    for ln in links:
        r = client.get("/api/v1/search?" + ln.replace("&amp;", "&"))
        assert r.status_code == 200 and r.headers["Content-Disposition"].startswith("attachment")
    # episode level: no export (exports list shots)
    assert "export-menu" not in client.get("/?q=object:dog&level=episode").get_data(as_text=True)

    html = client.get("/episodes/ntsc-b").get_data(as_text=True)
    assert '<span class="tc">00:01:00;02</span>' in html and "30000/1001 fps drop-frame" in html
    assert '>00:01:00;02</span></span>' in html  # the first shot's badge
    r = client.get("/api/v1/episodes/ntsc-b/shots?format=otio")
    assert 'href="/api/v1/episodes/ntsc-b/shots?format=otio"' in html and r.status_code == 200
    html = client.get("/episodes/vfr").get_data(as_text=True)
    assert "(variable rate: nominal)" in html


# --- the indexer stores each episode's clock (EpisodeBuilder, the real CLI) --------------------
@pytest.mark.media
def test_index_stores_the_clock_of_each_episode(tmp_path, shared_dir, model_dir):
    import os

    make_video(tmp_path / "tagged.mov", NTSC, 120, "01:00:00;00")  # 4 s at 29.97 DF
    make_video(tmp_path / "film.mp4", FILM, 48)
    manifest = tmp_path / "catalogue.csv"
    manifest.write_text("programme,episode_id,media_path,start_s,end_s\n"
                        f"tc,whole,{tmp_path / 'tagged.mov'},,\n"
                        f"tc,second-half,{tmp_path / 'tagged.mov'},2.002,4.004\n"
                        f"tc,film,{tmp_path / 'film.mp4'},,\n")
    env = dict(os.environ, TVINDEX_MODEL_DIR=str(model_dir), TVINDEX_SHARED_DIR=str(shared_dir),
               TVINDEX__TAGGERS__ACTIVE="[tflite-detector]", TVINDEX__SAMPLING__MODE="interval",
               TVINDEX__SAMPLING__EVERY_S="1")
    data = tmp_path / "data"
    r = subprocess.run([sys.executable, "-m", "tvindex.cli", "index", str(manifest),
                        "--data-dir", str(data), "--no-progress"], env=env, capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    with SqliteStore(data / "catalogue.sqlite") as s:
        whole, half, film = (s.episode(i) for i in ("whole", "second-half", "film"))
        assert whole.timecodes() == {"frame_rate": "30000/1001", "start_tc": "01:00:00;00",
                                     "end_tc": "01:00:04;00", "drop_frame": True, "vfr": False}
        # 60 frames into the file: its own first frame's timecode, its times from there
        assert half.timecodes()["start_tc"] == "01:00:02;00"
        assert half.clock.timecode(3.003) == "01:00:03;00"
        assert film.timecodes()["start_tc"] == "00:00:00:00"
        assert film.timecodes()["frame_rate"] == "24000/1001"
        segs = s.segments("second-half")
        clip = episode_clips(s, "second-half").clips[0]
        assert clip.tc_in == half.clock.timecode(segs[0].start_s)
