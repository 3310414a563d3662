"""The words pass of ``tvindex index`` over the real CLI and SQLite store: sources written per
episode, resumed per source, failures recorded per source with the pictures indexed, and the
words found by search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from words_media import FONTS, Overlay, Utterance, espeak_available, make_clip, write_srt

from search.store import open_store
from tvindex.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not FONTS, reason="no TrueType fonts installed")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvindex.cli", *args], capture_output=True,
                          text=True, cwd=REPO, env=os.environ | (env or {}), timeout=600,
                          check=False)


def index(manifest: Path, data: Path, *extra: str, env: dict[str, str] | None = None) -> dict:
    proc = cli("index", str(manifest), "--data-dir", str(data), "--taggers", "tflite-detector",
               "--json", "--no-progress", *extra, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def store_at(data: Path):
    return open_store(load_settings(overrides={"paths.data_dir": str(data)}))


NO_SPEECH = {"TVINDEX__WORDS__ENABLED": "[subtitles, screen]"}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, model_dir) -> Path:
    """Two episodes: a lower third and a Catalan sidecar; an embedded mov_text stream (the
    second file cut into two episodes), and one with a broken subtitle file."""
    d = tmp_path_factory.mktemp("words-cat")
    make_clip(d / "ple.mp4", 8.0, audio=False, overlays=[
        Overlay(2.0, 5.0, "Núria Puigcercós", FONTS[0], 30)])
    write_srt(d / "ple.ca.srt", [(1.0, 3.0, "Obrim el pavelló nou"), (5.0, 7.0, "Bona nit")])
    make_clip(d / "news.mp4", 8.0, audio=False, subtitle_stream=[
        (0.5, 2.5, "Pluja a la Garrotxa"), (5.0, 7.0, "Sol a Lleida")], subtitle_language="cat")
    make_clip(d / "broken.mp4", 3.0, audio=False)
    (d / "broken.srt").write_bytes(bytes(range(256)) * 30)
    (d / "m.csv").write_text(
        "programme,episode_id,media_path,start_s,end_s,language\n"
        "Ple,ple-1,ple.mp4,,,ca\n"
        "Notícies,news-1,news.mp4,0,4,ca\n"
        "Notícies,news-2,news.mp4,4,8,ca\n"
        "Notícies,broken-1,broken.mp4,,,\n")
    return d / "m.csv"


def test_words_are_indexed_resumed_per_source_and_failures_recorded(catalogue, tmp_path):
    data = tmp_path / "data"
    r = index(catalogue, data, env=NO_SPEECH)
    assert r["indexed"] == 4 and r["failed"] == {}  # the broken subtitles fail no picture
    words = r["words"]
    assert words["written"] == {"subtitles": 3, "screen": 4}, words
    assert list(words["failed"]) == ["subtitles"]
    assert "broken.srt: binary data" in words["failed"]["subtitles"]["broken-1"]
    with store_at(data) as store:
        assert [(s.start_s, s.end_s, s.text, s.language) for s in
                store.transcript("ple-1", "subtitles")] == [
            (1.0, 3.0, "Obrim el pavelló nou", "ca"), (5.0, 7.0, "Bona nit", "ca")]
        assert [(s.start_s, s.end_s, s.text) for s in store.transcript("ple-1", "screen")] == [
            (2.0, 5.0, "Núria Puigcercós")]
        # Each episode of the cut file keeps its own cues, clipped to its range.
        assert [(s.start_s, s.end_s, s.text) for s in store.transcript("news-1")] == [
            (0.5, 2.5, "Pluja a la Garrotxa")]
        assert [(s.start_s, s.end_s, s.text) for s in store.transcript("news-2")] == [
            (5.0, 7.0, "Sol a Lleida")]
        broken = {w["source"]: w for w in store.word_sources("broken-1")}
        assert "binary data" in broken["subtitles"]["error"] and broken["screen"]["error"] is None
        assert {s.id: s.status for s in store.episode_states()}["broken-1"] == "indexed"
    # The words are found by search: a lower-third name finds its shot, a subtitle line its
    # episode.
    assert_found_by_search(data)

    # A second run redoes nothing (a recorded failure stays until its file changes); a
    # changed subtitle file redoes that source for that episode only; a changed screen
    # setting redoes the screen source only.
    r = index(catalogue, data, env=NO_SPEECH)
    assert r["words"]["written"] == {} and r["words"]["unchanged"] == {"subtitles": 4,
                                                                       "screen": 4}
    write_srt(catalogue.parent / "ple.ca.srt", [(1.0, 3.0, "Obrim el pavelló nou"),
                                                (5.0, 7.0, "Bon dia")])
    r = index(catalogue, data, env=NO_SPEECH)
    assert r["words"]["written"] == {"subtitles": 1}, r["words"]
    r = index(catalogue, data, env=NO_SPEECH | {"TVINDEX__WORDS__SCREEN__MERGE_SIMILARITY": "0.9"})
    assert r["words"]["written"] == {"screen": 4} and r["words"]["unchanged"]["subtitles"] == 4
    with store_at(data) as store:
        assert store.transcript("ple-1", "subtitles")[-1].text == "Bon dia"

    # --no-words: the pass does not run at all.
    r = index(catalogue, data, "--no-words", "--force", env=NO_SPEECH)
    assert r["words"] is None

    assert_found_by_search(data)


def assert_found_by_search(data: Path) -> None:
    proc = cli("search", "screen:puigcercos", "--data-dir", str(data), "--json")
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)["hits"]
    assert hits and hits[0]["episode_id"] == "ple-1"
    assert hits[0]["start_s"] < 5.0 and hits[0]["end_s"] > 2.0  # the shot overlapping it
    proc = cli("search", 'subtitle:"pluja a la garrotxa"', "--data-dir", str(data), "--json",
               "--level", "episode")
    assert [h["id"] for h in json.loads(proc.stdout)["hits"]] == ["news-1"]


@pytest.mark.slow
@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
def test_spoken_phrase_found_by_search(tmp_path, model_dir):
    if not (model_dir / "faster-whisper-base" / "model.bin").is_file():
        pytest.skip("no faster-whisper-base in the shared model directory")
    make_clip(tmp_path / "talk.mp4", 12.0, speech=[
        Utterance(6.0, "The city council approved the new budget on Monday.")])
    make_clip(tmp_path / "other.mp4", 6.0, speech=[
        Utterance(1.0, "Heavy rain is expected in the mountains.")])
    (tmp_path / "m.csv").write_text("programme,episode_id,media_path,language\n"
                                    "Talk,talk,talk.mp4,en\nTalk,other,other.mp4,en\n")
    data = tmp_path / "data"
    r = index(tmp_path / "m.csv", data, "--every", "2",
              env={"TVINDEX__WORDS__ENABLED": "[speech]"})
    assert r["words"]["written"] == {"speech": 2}
    assert r["words"]["cost"]["speech"]["audio_s"] == pytest.approx(18.0, abs=0.2)
    proc = cli("search", 'said:"new budget"', "--data-dir", str(data), "--json")
    hits = json.loads(proc.stdout)["hits"]
    assert hits and hits[0]["episode_id"] == "talk"
    with store_at(data) as store:
        said = [s for s in store.transcript("talk", "speech") if "budget" in s.text.lower()]
    assert said and said[0].start_s < 9.0 and said[0].end_s > 6.0  # when it was spoken
    # The shot found overlaps the speech segment that says it.
    assert hits[0]["start_s"] < said[0].end_s and hits[0]["end_s"] > said[0].start_s


def test_words_skip_episodes_whose_pictures_failed(catalogue, tmp_path):
    junk = catalogue.parent / "junk.mp4"
    junk.write_text("not a video\n" * 100)
    (catalogue.parent / "junk.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    manifest = catalogue.parent / "with-junk.csv"
    manifest.write_text("programme,episode_id,media_path\nPle,ple-1,ple.mp4\nPle,junk,junk.mp4\n")
    proc = cli("index", str(manifest), "--data-dir", str(tmp_path / "d"), "--taggers",
               "tflite-detector", "--json", "--no-progress",
               env={"TVINDEX__WORDS__ENABLED": "[subtitles]"})
    assert proc.returncode == 1, proc.stderr  # the junk episode's pictures failed
    words = json.loads(proc.stdout)["words"]
    assert words["written"] == {"subtitles": 1} and words["not_indexed"] == 1, words


def test_manifest_subtitles_and_language_columns(tmp_path):
    from indexer.catalogue import ManifestError, load_manifest

    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "m.csv").write_text("programme,episode_id,media_path,subtitles,language\n"
                                    "P,e1,a.mp4,subs/a.ca.srt; a.en.vtt,CA\nP,e2,a.mp4,,\n")
    eps = {e.id: e for e in load_manifest(tmp_path / "m.csv").episodes}
    assert eps["e1"].subtitles == (str(tmp_path / "subs" / "a.ca.srt"),
                                   str(tmp_path / "a.en.vtt"))
    assert eps["e1"].language == "ca" and eps["e2"].subtitles == () and eps["e2"].language is None
    (tmp_path / "m.jsonl").write_text(json.dumps({
        "programme": "P", "episode_id": "e1", "media_path": "a.mp4",
        "subtitles": ["x.srt", "y.vtt"], "language": "es"}) + "\n")
    [ep] = load_manifest(tmp_path / "m.jsonl").episodes
    assert ep.subtitles == (str(tmp_path / "x.srt"), str(tmp_path / "y.vtt"))
    assert ep.language == "es"
    (tmp_path / "bad.csv").write_text("programme,episode_id,media_path,language\nP,e1,a.mp4,"
                                      "Catalan!\n")
    with pytest.raises(ManifestError, match="language must be an ISO 639 code"):
        load_manifest(tmp_path / "bad.csv")
