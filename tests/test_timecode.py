"""Broadcast timecode: rates, SMPTE labels, drop-frame counting, the episode clock."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tvindex.core.timecode import (
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
def test_drop_frame_round_trip_first_twenty_minutes_and_the_last(rate):
    fps = nominal_fps(rate)
    _check_drop_frame_run(rate, range(20 * 60 * fps))
    _check_drop_frame_run(rate, range(_day(rate) - 20 * 60 * fps, _day(rate)))
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
        for rate in (NTSC30, FILM, Fraction(25), NTSC60):
            assert seconds_to_frames(frames_to_seconds(n, rate), rate) == n


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
