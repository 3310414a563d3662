"""Broadcast timecode: rates, SMPTE labels, drop-frame counting, the episode clock."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from tvindex.core.timecode import (
    EpisodeClock,
    Timebase,
    TimecodeError,
    drop_frame_default,
    format_rate,
    frames_to_seconds,
    frames_to_timecode,
    nominal_fps,
    parse_rate,
    seconds_to_frames,
    timecode_to_frames,
)

NTSC30 = Fraction(30000, 1001)
NTSC60 = Fraction(60000, 1001)
FILM = Fraction(24000, 1001)


@pytest.mark.parametrize(
    ("value", "rate"),
    [
        ("30000/1001", NTSC30),
        (29.97, NTSC30),
        ("29.97", NTSC30),
        (23.976, FILM),
        ("23.98", FILM),
        (59.94, NTSC60),
        (25, Fraction(25)),
        ("25", Fraction(25)),
        (25.0, Fraction(25)),
        (Fraction(50), Fraction(50)),
        (12.5, Fraction(25, 2)),
    ],
)
def test_parse_rate(value, rate):
    assert parse_rate(value) == rate
    assert parse_rate(format_rate(rate)) == rate


@pytest.mark.parametrize("bad", ["", "abc", "0", "-25", "1/0", 0, -1.0, float("nan"), True, None])
def test_parse_rate_refuses(bad):
    with pytest.raises(TimecodeError):
        parse_rate(bad)


def test_nominal_and_defaults():
    rates = (FILM, Fraction(24), Fraction(25), NTSC30, NTSC60)
    assert [nominal_fps(r) for r in rates] == [24, 24, 25, 30, 60]
    assert drop_frame_default(NTSC30) and drop_frame_default(NTSC60)
    assert not any(drop_frame_default(r) for r in (FILM, Fraction(25), Fraction(30), Fraction(50)))
    assert format_rate(NTSC30) == "30000/1001" and format_rate(Fraction(25)) == "25"


@pytest.mark.parametrize(
    ("frames", "label"),
    [
        (0, "00:00:00;00"),
        (29, "00:00:00;29"),
        (1799, "00:00:59;29"),
        (1800, "00:01:00;02"),  # numbers 00 and 01 of minute 1 are dropped
        (1801, "00:01:00;03"),
        (3597, "00:01:59;29"),
        (3598, "00:02:00;02"),
        (17981, "00:09:59;29"),
        (17982, "00:10:00;00"),  # every tenth minute keeps all its numbers
        (17983, "00:10:00;01"),
        (17984, "00:10:00;02"),
        (19781, "00:10:59;29"),
        (19782, "00:11:00;02"),
        (107892, "01:00:00;00"),  # one hour of DF timecode is 107 892 frames
        (2589407, "23:59:59;29"),
        (2589408, "00:00:00;00"),  # wraps at 24 h
    ],
)
def test_drop_frame_2997(frames, label):
    assert frames_to_timecode(frames, NTSC30) == label
    assert timecode_to_frames(label, NTSC30) == frames % 2589408


@pytest.mark.parametrize(
    ("frames", "label"),
    [
        (3599, "00:00:59;59"),
        (3600, "00:01:00;04"),  # 59.94 drops four numbers a minute
        (35964, "00:10:00;00"),
        (215784, "01:00:00;00"),
    ],
)
def test_drop_frame_5994(frames, label):
    assert frames_to_timecode(frames, NTSC60) == label
    assert timecode_to_frames(label, NTSC60) == frames


def test_next_frame_after_a_dropping_minute():
    n = timecode_to_frames("00:00:59;29", NTSC30)
    assert frames_to_timecode(n + 1, NTSC30) == "00:01:00;02"
    n = timecode_to_frames("00:00:59;59", NTSC60)
    assert frames_to_timecode(n + 1, NTSC60) == "00:01:00;04"


def _check_drop_frame_run(rate: Fraction, frames: range) -> None:
    """Every frame formats to a label that parses back to it, and consecutive labels differ by
    one frame number except across the numbers drop-frame skips."""
    fps = nominal_fps(rate)
    drop = 2 if fps == 30 else 4
    prev = None
    for n in frames:
        label = frames_to_timecode(n, rate)
        assert timecode_to_frames(label, rate) == n
        h, m, s, f = int(label[:2]), int(label[3:5]), int(label[6:8]), int(label[9:])
        count = ((h * 60 + m) * 60 + s) * fps + f
        if prev is not None:
            step = count - prev
            assert step == (drop + 1 if s == 0 and f == drop and m % 10 else 1), label
        prev = count


def _day(rate: Fraction) -> int:
    fps = nominal_fps(rate)
    return 24 * 3600 * fps - (2 if fps == 30 else 4) * (1440 - 144)


@pytest.mark.parametrize("rate", [NTSC30, NTSC60])
def test_drop_frame_round_trip_first_eleven_minutes_and_the_last_two(rate):
    fps = nominal_fps(rate)
    _check_drop_frame_run(rate, range(11 * 60 * fps))  # across minutes 1 to 9 and the 10th
    _check_drop_frame_run(rate, range(_day(rate) - 2 * 60 * fps, _day(rate)))
    assert frames_to_timecode(_day(rate) - 1, rate) == f"23:59:59;{fps - 1:02d}"


@pytest.mark.slow
@pytest.mark.parametrize("rate", [NTSC30, NTSC60])
def test_drop_frame_round_trip_over_a_day(rate):
    _check_drop_frame_run(rate, range(_day(rate)))


@pytest.mark.parametrize(
    ("rate", "frames", "label"),
    [
        (Fraction(25), 0, "00:00:00:00"),
        (Fraction(25), 24, "00:00:00:24"),
        (Fraction(25), 25, "00:00:01:00"),
        (Fraction(25), 90000, "01:00:00:00"),
        (Fraction(25), 25 * 86400 - 1, "23:59:59:24"),
        (Fraction(25), 25 * 86400, "00:00:00:00"),
        (Fraction(24), 1441, "00:01:00:01"),
        (FILM, 1440, "00:01:00:00"),  # 23.976 is never drop-frame: 24 numbers a second
        (FILM, 86400, "01:00:00:00"),
        (Fraction(30), 1800, "00:01:00:00"),
        (Fraction(50), 3001, "00:01:00:01"),
        (Fraction(60), 3601, "00:01:00:01"),
    ],
)
def test_non_drop(rate, frames, label):
    assert frames_to_timecode(frames, rate) == label
    assert timecode_to_frames(label, rate) == frames % (nominal_fps(rate) * 86400)


def test_non_drop_2997_when_asked():
    assert frames_to_timecode(1800, NTSC30, drop_frame=False) == "00:01:00:00"
    assert timecode_to_frames("00:01:00:00", NTSC30) == 1800  # ':' says non-drop
    assert timecode_to_frames("00:01:00;02", NTSC30) == 1800
    assert timecode_to_frames("00.01.00.02", NTSC30) == 1800  # no say: the rate's default


@pytest.mark.parametrize(
    ("label", "rate"),
    [
        ("00:01:00;00", NTSC30),  # dropped numbers
        ("00:01:00;01", NTSC30),
        ("00:02:00;03", NTSC60),
        ("00:00:00:25", Fraction(25)),  # frames past the nominal rate
        ("00:00:00:24", FILM),
        ("00:60:00:00", Fraction(25)),
        ("00:00:60:00", Fraction(25)),
        ("24:00:00:00", Fraction(25)),
        ("00:00:00;00", Fraction(25)),  # drop-frame at 25 fps
        ("0:0:0:0", Fraction(25)),
        ("garbage", Fraction(25)),
    ],
)
def test_bad_labels(label, rate):
    with pytest.raises(TimecodeError):
        timecode_to_frames(label, rate)


def test_drop_frame_only_at_ntsc_rates():
    with pytest.raises(TimecodeError):
        frames_to_timecode(10, Fraction(25), drop_frame=True)
    with pytest.raises(TimecodeError):
        Timebase(Fraction(24000, 1001), drop_frame=True)


def test_seconds_and_frames():
    assert seconds_to_frames(1.2, Fraction(25)) == 30  # 1.2 * 25 is 29.999... in floats
    assert seconds_to_frames(0.039, Fraction(25)) == 0
    assert seconds_to_frames(0.04, Fraction(25)) == 1
    assert seconds_to_frames(1001 / 30000 * 7, NTSC30) == 7
    assert frames_to_seconds(1800, NTSC30) == pytest.approx(60.06)
    for n in range(0, 200000, 997):
        for rate in (NTSC30, FILM, Fraction(25), NTSC60, Fraction(120000, 1001)):
            assert seconds_to_frames(frames_to_seconds(n, rate), rate) == n
            # the indexer keeps times to the millisecond: a frame's start still maps to it
            assert seconds_to_frames(round(frames_to_seconds(n, rate), 3), rate) == n
            # a time inside a frame is that frame
            assert seconds_to_frames(frames_to_seconds(n, rate) + 0.6 / float(rate), rate) == n


def test_timebase_25():
    tb = Timebase.of(25)
    assert tb.start_tc == "00:00:00:00" and not tb.drop_frame and tb.fps == 25
    assert tb.timecode(0) == "00:00:00:00"
    assert tb.timecode(53.0) == "00:00:53:00"
    assert tb.timecode(79.5) == "00:01:19:12"
    assert tb.parse("00:01:19:12") == 1987


def test_timebase_start_timecode_and_offset():
    tb = Timebase.of("30000/1001", "01:00:00;00")
    assert tb.drop_frame and tb.start_frames == 107892
    assert tb.timecode(0) == "01:00:00;00"
    assert tb.label(1800) == "01:01:00;02"
    assert tb.parse("01:01:00;02") == 1800
    # an episode that starts 600 s (17 982.01 frames) into the file
    ep = tb.offset(600.0)
    assert ep.start_tc == "01:10:00;00"
    assert ep.timecode(1001 / 30000) == "01:10:00;01"
    # a non-drop label for a drop-frame start follows what the label says
    assert not Timebase.of(NTSC30, "10:00:00:00").drop_frame
    assert Timebase.of(NTSC30, "10:00:00:00").timecode(60.06) == "10:01:00:00"


def test_timebase_wraps_past_midnight():
    tb = Timebase.of(25, "23:59:59:00")
    assert tb.timecode(2) == "00:00:01:00"
    assert tb.parse("00:00:01:00") == 50


def test_timebase_refuses_negative_start():
    with pytest.raises(TimecodeError):
        Timebase(Fraction(25), False, -1)


# --- the episode clock as stored --------------------------------------------------------------
def test_episode_clock_from_a_tagged_file_and_an_episode_range():
    whole = EpisodeClock.for_episode(NTSC30, "01:00:00;00")
    assert whole.start_tc == "01:00:00;00" and whole.drop_frame
    assert whole.timecode(1001 / 30000 * 1800) == "01:01:00;02"
    # an episode that starts 30 frames into the file: its start timecode moves on, and its
    # times (seconds of the file) count from its own first frame
    part = EpisodeClock.for_episode(NTSC30, "01:00:00;00", start_s=1.001)
    assert part.start_tc == "01:00:01;00" and part.origin_s == 1.001
    assert part.timecode(1.001) == "01:00:01;00"
    assert part.timecode(round(1.001 + 1001 / 30000 * 31, 3)) == "01:00:02;01"
    assert part.frames(0.0) == 0  # before the episode: clamped to its start


def test_episode_clock_without_a_tag_starts_at_zero_at_the_episode_start():
    clock = EpisodeClock.for_episode(Fraction(25), None, start_s=600.0)
    assert clock.start_tc == "00:00:00:00" and not clock.drop_frame
    assert clock.timecode(600.0) == "00:00:00:00"
    assert clock.timecode(601.04) == "00:00:01:01"
    # 29.97 without a tag: drop-frame from 00:00:00;00
    assert EpisodeClock.for_episode(NTSC30).start_tc == "00:00:00;00"
    # a tag that is not a label at this rate is ignored
    assert EpisodeClock.for_episode(Fraction(25), "01:00:00:29").start_tc == "00:00:00:00"


def test_episode_clock_stored_round_trip_and_annotate():
    clock = EpisodeClock.for_episode(NTSC60, "10:00:00;00", start_s=0.5, vfr=True)
    again = EpisodeClock.stored(format_rate(clock.frame_rate), clock.start_tc,
                                clock.drop_frame, clock.vfr, clock.origin_s)
    assert again == clock
    assert EpisodeClock.stored(None, None, False, False, None) is None
    assert EpisodeClock.stored("abc", "00:00:00:00", False, False, 0.0) is None
    item = clock.annotate({"start_s": 0.5, "end_s": 1.0, "time_s": None, "n": 1})
    assert item["start_tc"] == "10:00:00;30" and item["end_tc"] == "10:00:00;59"
    assert "time_tc" not in item and clock.to_dict() == {
        "frame_rate": "60000/1001", "start_tc": "10:00:00;30", "drop_frame": True, "vfr": True}


# --- what the probe finds in real files (made here with PyAV) ---------------------------------
def make_video(path: Path, rate: Fraction | int | None, n: int, timecode: str | None = None,
               pts_ms: list[int] | None = None) -> Path:
    """``n`` tiny MPEG-4 frames at ``rate``, or at the millisecond times ``pts_ms`` (a
    variable-frame-rate file), with an optional ``timecode`` tag."""
    import av
    import numpy as np

    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=rate or 25)
    if pts_ms is not None:
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    if timecode:
        stream.metadata["timecode"] = timecode
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 7 % 255, np.uint8),
                                           format="rgb24")
        if pts_ms is not None:
            frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


VFR_GAPS_MS = [40, 40, 120, 40, 20, 200, 40, 40, 80, 40, 40, 40, 300, 40, 40, 40, 60, 40]


def vfr_pts() -> list[int]:
    pts = [0]
    for gap in VFR_GAPS_MS:
        pts.append(pts[-1] + gap)
    return pts


@pytest.mark.parametrize(
    ("name", "rate", "tag", "want_rate", "want_tc", "vfr"),
    [
        ("pal.mp4", 25, None, Fraction(25), None, False),
        ("ntsc.mov", NTSC30, "01:00:00;00", NTSC30, "01:00:00;00", False),
        ("ntsc.mp4", NTSC30, "00:59:59;28", NTSC30, "00:59:59;28", False),
        ("ntsc.mkv", NTSC30, "01:00:00;00", NTSC30, "01:00:00;00", False),  # container tag
        ("film.mp4", FILM, "10:00:00:00", FILM, "10:00:00:00", False),
        ("ntsc60.mov", NTSC60, "10:00:00;00", NTSC60, "10:00:00;00", False),
        ("vfr.mkv", None, None, Fraction(25), None, True),
    ],
)
def test_probe_finds_rate_timecode_and_variable_rate(tmp_path, name, rate, tag, want_rate,
                                                     want_tc, vfr):
    from indexer.media import probe

    path = tmp_path / name
    if vfr:
        make_video(path, None, len(vfr_pts()), pts_ms=vfr_pts())
    else:
        make_video(path, rate, 30, tag)
    info = probe(path)
    assert info.frame_rate == want_rate
    assert info.timecode == want_tc
    assert info.vfr is vfr
    clock = EpisodeClock.for_episode(info.frame_rate, info.timecode, None, info.vfr)
    assert clock.start_tc == (want_tc or ("00:00:00;00" if want_rate in (NTSC30, NTSC60)
                                          else "00:00:00:00"))
    assert clock.vfr is vfr


def test_probe_of_the_shared_footage_is_constant_rate_without_a_tag(video_dir):
    from indexer.media import probe

    info = probe(video_dir / "carphone_pristine.mp4")
    assert info.frame_rate == NTSC30 and info.timecode is None and not info.vfr
    assert probe(video_dir / "bikes.mp4").frame_rate == 25
