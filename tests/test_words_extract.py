"""The word sources on generated media: subtitle files and streams, on-screen text, speech;
and their bad inputs (broken subtitle files, undecodable audio, an incomplete model folder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from words_media import (
    BACKGROUNDS,
    FONTS,
    Overlay,
    Utterance,
    background,
    espeak_available,
    lower_third_frame,
    make_clip,
    write_srt,
    write_vtt,
)

from indexer.taggers.base import RuntimeContext
from indexer.weights import ModelResolver
from indexer.words import WordsError, create_word_extractor, list_word_extractors
from indexer.words.subtitle_formats import (
    SubtitleFormatError,
    clean_text,
    parse_srt,
    parse_subtitle_bytes,
    parse_vtt,
)
from indexer.words.subtitles import find_sidecars, language_code
from tvindex.core.records import EpisodeRecord
from tvindex.settings.words import ScreenWordSettings, SpeechWordSettings, SubtitlesWordSettings


def episode(path: Path, **kw) -> EpisodeRecord:
    return EpisodeRecord(kw.pop("id", "ep"), "prog", "Episode", str(path), **kw)


# --- subtitle files --------------------------------------------------------------------------
def test_srt_and_vtt_parse_with_tags_entities_and_bad_cues_skipped():
    srt = ("1\n00:00:01,000 --> 00:00:02,500\n<i>Bon dia</i> a tothom\n\n"
           "2\n00:00:03,000 --> 00:00:02,000\nbackwards cue\n\n"
           "3\n00:00:04,000 --> 00:00:05,000\n{\\an8}Obrim el\npavelló &amp; més\n")
    cues = parse_srt(srt)
    assert [(c.start_s, c.end_s, c.text) for c in cues] == [
        (1.0, 2.5, "Bon dia a tothom"), (4.0, 5.0, "Obrim el pavelló & més")]
    vtt = ("WEBVTT\n\nNOTE a comment\n\nintro\n00:01.000 --> 00:02.000 align:start\n"
           "<v Anna>Hola <c.yellow>Girona</c>\n\n01:00:00.500 --> 01:00:01.000\nfi\n")
    assert [(c.start_s, c.end_s, c.text) for c in parse_vtt(vtt)] == [
        (1.0, 2.0, "Hola Girona"), (3600.5, 3601.0, "fi")]
    # Windows-1252 (older Catalan subtitles) is read, not garbled into an error.
    legacy = "1\n00:00:01,000 --> 00:00:02,000\nPlaça de l'Ajuntament\n".encode("cp1252")
    assert parse_subtitle_bytes(legacy, ".srt")[0].text == "Plaça de l'Ajuntament"
    assert clean_text("a\\Nb {\\i1}c{\\i0}") == "a b c"


@pytest.mark.parametrize("data, why", [
    (bytes(range(256)) * 50, "binary"),
    (b"just some notes\nwithout any cue\n", "no cues"),
    (b"1\n00:00:99,000 --> 00:00:01,000\nbad\n", "bad timestamps"),
    (b"1\n00:00:01,000 --> 05:00:00,000\ntoo long\n", "bad timestamps"),
])
def test_hostile_subtitle_bytes_are_one_error(data, why):
    with pytest.raises(SubtitleFormatError, match=why):
        parse_subtitle_bytes(data, ".srt")
    with pytest.raises(SubtitleFormatError):
        parse_subtitle_bytes(b"1\n00:00:01,000 --> 00:00:02,000\nno header\n", ".vtt")


def test_language_codes_and_sidecar_names(tmp_path):
    assert [language_code(x) for x in ("ca", "cat", "es-ES", "spa", "eng", "und", "forced", None)
            ] == ["ca", "ca", "es", "es", "en", None, None, None]
    media = tmp_path / "news.mp4"
    media.write_bytes(b"x")
    for name in ("news.srt", "news.ca.vtt", "news.es-ES.srt", "news.forced.srt", "other.srt",
                 "news.ca.txt", "newsroom.srt"):
        (tmp_path / name).write_text("x")
    assert [(p.name, lang) for p, lang in find_sidecars(media)] == [
        ("news.ca.vtt", "ca"), ("news.es-ES.srt", "es"), ("news.srt", None)]


@pytest.fixture(scope="module")
def subtitled_clip(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("subs")
    clip = make_clip(d / "ple.mp4", 8.0, audio=False, subtitle_stream=[
        (0.5, 2.0, "Bon dia a tothom"), (5.0, 7.5, "Obrim el pavelló")])
    write_srt(d / "ple.en.srt", [(1.0, 3.0, "Good morning everyone"), (6.0, 7.0, "We open")])
    write_vtt(d / "ple.es.vtt", [(1.0, 3.0, "Buenos días a todos")])
    return clip.path


def test_subtitles_from_sidecars_embedded_stream_and_manifest(subtitled_clip, tmp_path):
    ex = create_word_extractor("subtitles")
    segs = ex.extract(episode(subtitled_clip, language="ca"))
    got = {(round(s.start_s, 2), round(s.end_s, 2), s.language, s.text) for s in segs}
    assert got == {(0.5, 2.0, "ca", "Bon dia a tothom"), (5.0, 7.5, "ca", "Obrim el pavelló"),
                   (1.0, 3.0, "en", "Good morning everyone"), (6.0, 7.0, "en", "We open"),
                   (1.0, 3.0, "es", "Buenos días a todos")}
    assert all(s.source == "subtitles" and s.confidence == 1.0 for s in segs)
    # An episode is a time range of the file: cues are clipped to it.
    part = ex.extract(episode(subtitled_clip, start_s=2.5, end_s=6.5))
    assert {(s.start_s, s.end_s, s.text) for s in part} == {
        (2.5, 3.0, "Good morning everyone"), (2.5, 3.0, "Buenos días a todos"),
        (5.0, 6.5, "Obrim el pavelló"), (6.0, 6.5, "We open")}
    # A file the manifest names, with the manifest's language; sidecars and streams off.
    named = write_srt(tmp_path / "extra.srt", [(2.0, 4.0, "Pluja a Girona")])
    only = create_word_extractor("subtitles", SubtitlesWordSettings(sidecars=False,
                                                                    embedded=False))
    segs = only.extract(episode(subtitled_clip, subtitles=(str(named),), language="ca"))
    assert [(s.text, s.language) for s in segs] == [("Pluja a Girona", "ca")]


def test_subtitle_version_follows_the_files(subtitled_clip):
    ex = create_word_extractor("subtitles")
    ep = episode(subtitled_clip)
    before = ex.episode_version(ep)
    assert ex.episode_version(ep) == before
    sidecar = subtitled_clip.with_name("ple.en.srt")
    old = sidecar.read_text()
    try:
        sidecar.write_text(old + "\n3\n00:00:07,000 --> 00:00:07,500\nBye\n")
        assert ex.episode_version(ep) != before
    finally:
        sidecar.write_text(old)
    other = create_word_extractor("subtitles", SubtitlesWordSettings(default_language="ca"))
    assert other.version != ex.version


def test_broken_and_huge_subtitle_files_are_recorded_reasons(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", 2.0, audio=False)
    (tmp_path / "a.srt").write_bytes(bytes(range(256)) * 40)
    ex = create_word_extractor("subtitles")
    with pytest.raises(WordsError, match=r"a\.srt: binary data"):
        ex.extract(episode(clip.path))
    (tmp_path / "a.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n" * 400)
    small = create_word_extractor("subtitles", SubtitlesWordSettings(max_file_bytes=1024))
    with pytest.raises(WordsError, match="max_file_bytes"):
        small.extract(episode(clip.path))
    with pytest.raises(WordsError, match="cannot read"):
        ex.extract(episode(clip.path, subtitles=(str(tmp_path / "missing.srt"),)))


# --- on-screen text --------------------------------------------------------------------------
LINES = ["Núria Puigcercós", "alcaldessa de Girona", "Pluja a la Garrotxa", "Eleccions 2027"]


@pytest.mark.skipif(not FONTS, reason="no TrueType fonts (DejaVu/Liberation) installed")
def test_precheck_keeps_every_rendered_line_and_skips_plain_pictures():
    from indexer.words.textcheck import has_text_lines

    for i, font in enumerate(FONTS):
        for size in (24, 36, 56):
            for where in ("lower", "caption"):
                bg = BACKGROUNDS[(i + size) % len(BACKGROUNDS)]
                img = lower_third_frame(LINES[i % len(LINES)], font, size, bg, where=where)
                assert has_text_lines(img), (font, size, bg, where)
    for bg in ("flat", "gradient"):
        assert not has_text_lines(np.asarray(background(bg, (1280, 720))))


@pytest.mark.skipif(not FONTS, reason="no TrueType fonts (DejaVu/Liberation) installed")
def test_screen_text_is_read_merged_and_timed(tmp_path):
    clip = make_clip(tmp_path / "lt.mp4", 9.0, audio=False, overlays=[
        Overlay(2.0, 6.0, "Núria Puigcercós", FONTS[0], 30),
        Overlay(6.0, 8.0, "Pluja a la Garrotxa", FONTS[-1], 26, "caption")])
    ex = create_word_extractor("screen")
    segs = ex.extract(episode(clip.path))
    got = [(s.start_s, s.end_s, s.text) for s in segs]
    assert got == [(2.0, 6.0, "Núria Puigcercós"), (6.0, 8.0, "Pluja a la Garrotxa")], got
    assert all(s.source == "screen" and 0.6 <= s.confidence <= 1 for s in segs)
    cost = ex.cost()
    # 9 frames: the two text changes are read (plus the first frame at most), the rest skipped.
    assert cost["frames"] == 9 and cost["ocr_frames"] <= 3 and cost["skip_rate"] >= 0.6, cost
    # Without the pre-check every frame is read, and the answer is the same.
    plain = create_word_extractor("screen", ScreenWordSettings(precheck=False, every_s=3.0))
    assert [s.text for s in plain.extract(episode(clip.path))] == [g[2] for g in got]
    assert plain.cost()["ocr_frames"] == 3
    # An episode range: only its frames, its times.
    part = ex.extract(episode(clip.path, start_s=4.0, end_s=7.0))
    assert [(s.start_s, s.end_s, s.text) for s in part] == [
        (4.0, 6.0, "Núria Puigcercós"), (6.0, 7.0, "Pluja a la Garrotxa")]


def test_screen_on_a_broken_file_is_a_reason(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video\n" * 50)
    with pytest.raises(WordsError, match="screen: not a video"):
        create_word_extractor("screen").extract(episode(bad))


# --- speech ----------------------------------------------------------------------------------
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


def whisper_ctx(model_dir: Path) -> RuntimeContext:
    if not (model_dir / "faster-whisper-base" / "model.bin").is_file():
        pytest.skip("no faster-whisper-base in the shared model directory")
    return RuntimeContext(device="cpu", models=ModelResolver(model_dir))


@needs_espeak
def test_speech_finds_an_english_sentence_with_its_time(tmp_path, model_dir):
    ctx = whisper_ctx(model_dir)
    clip = make_clip(tmp_path / "talk.mp4", 9.0, speech=[
        Utterance(3.0, "The mayor opened the new sports hall this morning.")])
    ex = create_word_extractor("speech", SpeechWordSettings(language="en"), ctx)
    segs = ex.extract(episode(clip.path))
    text = " ".join(s.text for s in segs).lower()
    for word in ("opened", "new", "morning"):  # espeak's "mayor" comes out as "amer" too
        assert word in text, text
    t0, t1 = clip.speech[0][:2]
    assert all(s.source == "speech" and s.language == "en" for s in segs)
    assert segs[0].start_s < t1 and segs[-1].end_s > t0  # overlaps the spoken time
    assert 2.0 <= segs[0].start_s <= 4.0, segs[0]
    words = [w for s in segs for w in s.words]
    assert words and all(t0 - 1.5 <= w.start_s <= w.end_s <= t1 + 1.5 for w in words)
    assert ex.cost()["audio_s"] == pytest.approx(9.0, abs=0.1)
    # The same sentence in the second half of the file, as an episode range [4.5, 9).
    late = make_clip(tmp_path / "late.mp4", 9.0, speech=[
        Utterance(5.0, "The mayor opened the new sports hall this morning.")])
    part = ex.extract(episode(late.path, start_s=4.5))
    assert part and 4.5 <= part[0].start_s <= 6.5 and "morning" in part[0].text.lower()
    # No audio stream: no speech, not an error.
    silent = make_clip(tmp_path / "silent.mp4", 2.0, audio=False)
    assert ex.extract(episode(silent.path)) == []


def test_speech_model_folder_missing_a_file_is_a_reason(tmp_path, model_dir):
    src = model_dir / "faster-whisper-base"
    if not src.is_dir():
        pytest.skip("no faster-whisper-base in the shared model directory")
    broken = tmp_path / "models" / "faster-whisper-base"
    broken.mkdir(parents=True)
    for f in ("config.json", "vocabulary.txt"):
        shutil.copy(src / f, broken / f)
    ctx = RuntimeContext(models=ModelResolver(tmp_path / "models"))
    ex = create_word_extractor("speech", None, ctx)
    assert "unavailable" in ex.version
    clip = make_clip(tmp_path / "a.mp4", 1.0, audio=False)
    with pytest.raises(WordsError, match="missing model.bin, tokenizer.json"):
        ex.extract(episode(clip.path))
    nowhere = create_word_extractor("speech", SpeechWordSettings(model="no-such-model"), ctx)
    with pytest.raises(WordsError, match="'no-such-model' not found"):
        nowhere.extract(episode(clip.path))


def test_undecodable_audio_is_a_reason(tmp_path, model_dir):
    ctx = whisper_ctx(model_dir)
    clip = make_clip(tmp_path / "noise.mp4", 4.0, speech=[])
    data = bytearray(clip.path.read_bytes())
    # Overwrite the AAC payloads (the mdat after the video's) with garbage: the container
    # still opens, the audio decoder fails.
    import av

    with av.open(str(clip.path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.audio[0]) if p.size and p.pos]
    rng = np.random.default_rng(0)
    for pos, size in spans:
        data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    clip.path.write_bytes(bytes(data))
    ex = create_word_extractor("speech", SpeechWordSettings(language="en"), ctx)
    with pytest.raises(WordsError, match=r"audio: cannot be decoded \(\d+ of \d+ packets"):
        ex.extract(episode(clip.path))


@needs_espeak
def test_a_few_damaged_audio_packets_are_silence(tmp_path, model_dir):
    ctx = whisper_ctx(model_dir)
    clip = make_clip(tmp_path / "glitch.mp4", 8.0, speech=[
        Utterance(4.0, "The city council approved the new budget on Monday.")])
    import av

    data = bytearray(clip.path.read_bytes())
    with av.open(str(clip.path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.audio[0]) if p.size and p.pos]
    for pos, size in spans[20:23]:  # ~0.2 s of silence before the sentence
        data[pos:pos + size] = bytes(size)
    clip.path.write_bytes(bytes(data))
    segs = create_word_extractor("speech", SpeechWordSettings(language="en"), ctx).extract(
        episode(clip.path))
    assert any("budget" in s.text.lower() and 3.0 <= s.start_s <= 5.0 for s in segs), segs


def test_registry_lists_the_three_sources():
    assert list_word_extractors() == ["screen", "speech", "subtitles"]
    with pytest.raises(WordsError, match="unknown word source"):
        create_word_extractor("telepathy")
