"""indexer.media on real footage from ../shared/media/video.

Expected values come from plain PyAV reads (every frame decoded in order, packets demuxed),
never from indexer.media itself; files derived here (raw H.264, MPEG-TS, truncations) are
written to temporary folders only.
"""

from __future__ import annotations

import itertools
import os
import pickle
import warnings
from pathlib import Path

import av
import numpy as np
import pytest

from indexer.media import (
    Frame,
    MediaError,
    MediaInfo,
    Sampler,
    Shot,
    detect_shots,
    probe,
    sample_frames,
)
from indexer.media import probing as probing_module
from tvindex.settings import SamplingSettings

pytestmark = pytest.mark.media


# -------------------------------------------------------------------------------------------
# Independent readings of the files (plain PyAV, no seeking)


def _key_times(path: Path) -> list[float]:
    """Seconds of every key packet, from demuxing the whole file."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        origin = s.start_time or 0
        return sorted(
            float((p.pts - origin) * s.time_base)
            for p in c.demux(s)
            if p.size and p.is_keyframe and p.pts is not None
        )


def _sequential(path: Path, times: list[float]) -> list[tuple[float, np.ndarray]]:
    """For each time, the first frame at or after it, decoding every frame in order."""
    out: list[tuple[float, np.ndarray]] = []
    pending = list(times)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        origin = s.start_time or 0
        for f in c.decode(s):
            ft = float((f.pts - origin) * s.time_base)
            while pending and ft >= pending[0] - 1e-6:
                out.append((ft, f.to_ndarray(format="rgb24")))
                pending.pop(0)
            if not pending:
                break
    return out


def _all_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        origin = s.start_time or 0
        return [float((f.pts - origin) * s.time_base) for f in c.decode(s)]


def _remux(src: Path, dst: Path, fmt: str | None = None, **options: str) -> Path:
    """Copy the video packets of ``src`` into another container, without re-encoding."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt, options=options) as o:
        si = i.streams.video[0]
        so = o.add_stream_from_template(si)
        for pkt in i.demux(si):
            if pkt.dts is None:
                continue
            pkt.stream = so
            o.mux(pkt)
    return dst


def _open_fds(path: Path) -> int:
    target = os.path.realpath(path)
    fd_dir = "/proc/self/fd"
    n = 0
    for fd in os.listdir(fd_dir):
        try:
            n += os.path.realpath(os.path.join(fd_dir, fd)) == target
        except OSError:
            pass
    return n


def _encode_long(path: Path, seconds: int = 150, fps: int = 5) -> Path:
    """A small synthetic video longer than probe's 2-minute packet scan (64x48, MPEG-4)."""
    yy, xx = np.mgrid[0:48, 0:64]
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(seconds * fps):
            rgb = np.stack([(xx * 4 + i) % 256, (yy * 5 + 2 * i) % 256, np.full_like(xx, i % 256)])
            frame = av.VideoFrame.from_ndarray(rgb.transpose(1, 2, 0).astype(np.uint8))
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="session")
def bikes(video_dir: Path) -> Path:
    return video_dir / "bikes.mp4"


@pytest.fixture(scope="session")
def vtest(video_dir: Path) -> Path:
    return video_dir / "vtest.avi"


@pytest.fixture(scope="session")
def tree(video_dir: Path) -> Path:
    return video_dir / "tree.avi"


@pytest.fixture(scope="session")
def derived(tmp_path_factory: pytest.TempPathFactory, bikes: Path, vtest: Path) -> dict[str, Path]:
    """bikes.mp4's own packets in other containers, and files cut short."""
    d = tmp_path_factory.mktemp("derived")
    fast = _remux(bikes, d / "bikes_faststart.mp4", movflags="faststart")
    data = fast.read_bytes()
    (d / "faststart_cut.mp4").write_bytes(data[: len(data) // 3])
    avi = vtest.read_bytes()
    (d / "vtest_cut.avi").write_bytes(avi[: len(avi) // 3])
    long = _encode_long(d / "long.mp4")
    data = long.read_bytes()
    (d / "long_cut.mp4").write_bytes(data[: len(data) * 93 // 100])  # ends ~10 s early
    return {
        # no timestamps, no index: seeking raises, only sequential reading works
        "raw": _remux(bikes, d / "bikes.h264", fmt="h264"),
        # no index: seeks land near the target on any packet, often after the key frame
        "ts": _remux(bikes, d / "bikes.ts", fmt="mpegts"),
        # index first, so the container opens although the data stops a third of the way in
        "faststart_cut": d / "faststart_cut.mp4",
        "avi_cut": d / "vtest_cut.avi",
        # longer than the 2-minute scan: its end is checked by a seek
        "long": long,
        "long_cut": d / "long_cut.mp4",
    }


# -------------------------------------------------------------------------------------------
# probe


def test_probe_bikes(bikes: Path) -> None:
    info = probe(bikes)
    assert isinstance(info, MediaInfo)
    assert info.path == bikes
    assert info.duration_s == pytest.approx(10.0, abs=0.2)
    assert (info.width, info.height) == (640, 272)
    assert info.fps == pytest.approx(25.0)
    assert info.codec == "h264"
    assert info.frame_count == len(_all_times(bikes)) == 250
    keys = _key_times(bikes)
    assert info.keyframe_interval_s == pytest.approx((keys[-1] - keys[0]) / (len(keys) - 1))
    assert info.seekable


def test_probe_vtest(vtest: Path) -> None:
    info = probe(vtest)
    assert info.duration_s == pytest.approx(79.5, abs=0.2)
    assert (info.width, info.height) == (768, 576)
    assert info.fps == pytest.approx(10.0)
    assert info.frame_count == 795
    assert info.keyframe_interval_s == pytest.approx(25.0)  # key frames at 0, 25, 50, 75 s


def test_probe_tree_reports_the_frames_really_there(tree: Path) -> None:
    info = probe(tree)
    times = _all_times(tree)
    assert (info.width, info.height) == (320, 240)
    assert info.duration_s == pytest.approx(29.6, abs=0.2)
    # nominally 15 fps, but only 68 pictures in 29.6 s: fps is what a sampler will see
    assert info.frame_count == len(times) == 68
    assert info.fps == pytest.approx((len(times) - 1) / (times[-1] - times[0]), rel=1e-3)


def test_probe_unseekable_raw_stream(derived: dict[str, Path]) -> None:
    info = probe(derived["raw"])
    assert not info.seekable
    assert info.duration_s == pytest.approx(10.0, abs=0.1)
    assert info.frame_count == 250


def test_probe_long_file_beyond_the_scan(derived: dict[str, Path]) -> None:
    info = probe(derived["long"])
    assert info.duration_s == pytest.approx(150.0)
    assert info.frame_count == 750  # the container's count: the scan stopped at 2 minutes
    assert info.keyframe_interval_s == pytest.approx(2.4)  # MPEG-4's default 12-frame GOP
    assert info.seekable
    requested = [0.0, 30.0, 60.0, 90.0, 120.0]
    frames = list(sample_frames(derived["long"], "interval", 30.0))
    expected = _sequential(derived["long"], requested)
    assert [f.time_s for f in frames] == pytest.approx(requested)
    assert all(np.array_equal(f.image, im) for f, (_, im) in zip(frames, expected, strict=True))
    with pytest.raises(MediaError, match=r"truncated or corrupt: data ends at 14\d\.\d s of 150"):
        probe(derived["long_cut"])


# -------------------------------------------------------------------------------------------
# interval mode


def test_interval_bikes_every_2s(bikes: Path) -> None:
    frames = list(sample_frames(bikes, "interval", 2.0))
    requested = [0.0, 2.0, 4.0, 6.0, 8.0]
    assert [f.index for f in frames] == list(range(5))
    for f, t in zip(frames, requested, strict=True):
        assert t <= f.time_s < t + 1 / 25 + 1e-6
        assert f.image.shape == (272, 640, 3)
        assert f.image.dtype == np.uint8 and f.image.flags["C_CONTIGUOUS"]
        assert f.shot is None
    # the seek path returns exactly the pictures sequential decoding finds
    for f, (t, image) in zip(frames, _sequential(bikes, requested), strict=True):
        assert f.time_s == pytest.approx(t)
        assert np.array_equal(f.image, image)


def test_decoder_threads_are_set_and_change_no_picture(bikes: Path, monkeypatch) -> None:
    from indexer.media import set_decode_threads, source

    monkeypatch.setattr(source, "_decode_threads", 0)
    default = list(sample_frames(bikes, "interval", 0.5))
    set_decode_threads(1)
    with source._Source(bikes) as src:
        assert src.stream.codec_context.thread_count == 1
    one = list(sample_frames(bikes, "interval", 0.5))
    assert len(one) == len(default) == 20
    assert all(a.time_s == b.time_s and np.array_equal(a.image, b.image)
               for a, b in zip(one, default, strict=True))
    with pytest.raises(ValueError):
        set_decode_threads(-1)


def test_interval_bikes_seeking_matches_sequential(bikes: Path) -> None:
    # every 3 s is longer than the ~1.9 s key-frame interval: each sample seeks
    requested = [0.5, 3.5, 6.5, 9.5]
    frames = list(sample_frames(bikes, "interval", 3.0, start_s=0.5))
    expected = _sequential(bikes, requested)
    assert [f.time_s for f in frames] == pytest.approx([t for t, _ in expected])
    assert all(np.array_equal(f.image, im) for f, (_, im) in zip(frames, expected, strict=True))


def test_interval_vtest_every_10s(vtest: Path) -> None:
    frames = list(sample_frames(vtest, "interval", 10.0, max_side=64))
    assert [f.time_s for f in frames] == pytest.approx([0, 10, 20, 30, 40, 50, 60, 70])


def test_interval_without_seeking_gives_the_same_frames(
    bikes: Path, derived: dict[str, Path]
) -> None:
    """Raw H.264 cannot seek: the sequential fallback must pick the same pictures."""
    for every in (2.0, 3.0):
        want = list(sample_frames(bikes, "interval", every))
        got = list(sample_frames(derived["raw"], "interval", every))
        assert [f.time_s for f in got] == pytest.approx([f.time_s for f in want])
        assert all(np.array_equal(a.image, b.image) for a, b in zip(got, want, strict=True))


def test_interval_when_seeks_land_late(bikes: Path, derived: dict[str, Path]) -> None:
    """MPEG-TS seeks land after the key frame; backing off must still find the right frame."""
    want = list(sample_frames(bikes, "interval", 3.0, start_s=0.5))
    got = list(sample_frames(derived["ts"], "interval", 3.0, start_s=0.5))
    assert [f.time_s for f in got] == pytest.approx([f.time_s for f in want])
    assert all(np.array_equal(a.image, b.image) for a, b in zip(got, want, strict=True))


def test_interval_range_and_max_side(bikes: Path) -> None:
    frames = list(sample_frames(bikes, "interval", 1.0, start_s=3.5, end_s=7.0, max_side=100))
    assert [f.time_s for f in frames] == pytest.approx([3.52, 4.52, 5.52, 6.52])
    for f in frames:
        h, w = f.image.shape[:2]
        assert max(h, w) == 100 and f.image.shape[2] == 3
        assert h == pytest.approx(100 * 272 / 640, abs=1)
    # a max_side beyond the frame leaves it alone
    big = next(iter(sample_frames(bikes, "interval", 5.0, max_side=4000)))
    assert big.image.shape == (272, 640, 3)


# -------------------------------------------------------------------------------------------
# keyframes mode


def test_keyframes_bikes(bikes: Path) -> None:
    keys = _key_times(bikes)
    frames = list(sample_frames(bikes, "keyframes", 2.0))
    times = [f.time_s for f in frames]
    assert len(frames) <= 5  # one sampling time each at most
    assert times == sorted(set(times))
    for t in times:
        assert min(abs(t - k) for k in keys) < 1e-6
    assert times == pytest.approx([0.0, 1.2, 3.04, 5.48, 7.48])
    # the key frame's picture, not a neighbour's
    for f, (t, image) in zip(frames, _sequential(bikes, times), strict=True):
        assert f.time_s == pytest.approx(t) and np.array_equal(f.image, image)


def test_keyframes_vtest_sparse_gop(vtest: Path) -> None:
    # 8 sampling times, 4 key frames: each key frame once, the nearest to some sampling time
    frames = list(sample_frames(vtest, "keyframes", 10.0, max_side=64))
    assert [f.time_s for f in frames] == pytest.approx([0.0, 25.0, 50.0, 75.0])
    assert [f.index for f in frames] == [0, 1, 2, 3]


def test_keyframes_range_and_fallback(bikes: Path, derived: dict[str, Path]) -> None:
    frames = list(sample_frames(bikes, "keyframes", 2.0, start_s=2.5, end_s=8.0))
    assert all(2.5 <= f.time_s < 8.0 for f in frames)
    assert [f.time_s for f in frames] == pytest.approx([3.04, 5.48, 7.48])
    for name in ("raw", "ts"):
        got = list(sample_frames(derived[name], "keyframes", 2.0, start_s=2.5, end_s=8.0))
        assert [f.time_s for f in got] == pytest.approx([3.04, 5.48, 7.48])
        assert all(np.array_equal(a.image, b.image) for a, b in zip(got, frames, strict=True))


# -------------------------------------------------------------------------------------------
# shots mode


def _scenedetect_cuts(path: Path) -> list[float]:
    """Cuts found by PySceneDetect itself (OpenCV backend), as a cross-check."""
    from scenedetect import ContentDetector, detect

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scenes = detect(str(path), ContentDetector())
        return [s.get_seconds() for s, _ in scenes[1:]]


def _assert_tiles(shots: list[Shot], start: float, end: float) -> None:
    assert [s.index for s in shots] == list(range(len(shots)))
    assert shots[0].start_s == pytest.approx(start)
    assert shots[-1].end_s == pytest.approx(end)
    for a, b in itertools.pairwise(shots):
        assert a.end_s == b.start_s
    assert all(s.end_s > s.start_s for s in shots)


def test_shots_bikes(bikes: Path) -> None:
    info = probe(bikes)
    shots = detect_shots(bikes)
    assert 4 <= len(shots) <= 7
    _assert_tiles(shots, 0.0, info.duration_s)
    assert all(s.end_s - s.start_s >= 0.6 for s in shots)
    # the same cuts as PySceneDetect's ContentDetector, except one closer to the end than
    # min_shot_s (we fold such a stub into the last shot)
    reference = [c for c in _scenedetect_cuts(bikes) if c < info.duration_s - 0.6]
    assert [s.start_s for s in shots[1:]] == pytest.approx(reference, abs=1 / 25 + 1e-6)

    frames = list(sample_frames(bikes, "shots"))
    assert [f.shot for f in frames] == shots  # one per shot, in order
    for f in frames:
        assert f.shot is not None
        assert f.shot.start_s <= f.time_s < f.shot.end_s
        assert f.time_s == pytest.approx((f.shot.start_s + f.shot.end_s) / 2, abs=1 / 25 + 1e-6)


def test_shots_three_frames_per_shot(bikes: Path) -> None:
    frames = list(sample_frames(bikes, "shots", frames_per_shot=3, max_side=160))
    by_shot: dict[int, list[Frame]] = {}
    for f in frames:
        assert f.shot is not None and f.shot.start_s <= f.time_s < f.shot.end_s
        by_shot.setdefault(f.shot.index, []).append(f)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [f.time_s for f in frames] == sorted({f.time_s for f in frames})
    for group in by_shot.values():
        assert 1 <= len(group) <= 3
        shot = group[0].shot
        assert shot is not None
        if shot.end_s - shot.start_s >= 0.6:  # long enough for 3 distinct frames at 25 fps
            length = shot.end_s - shot.start_s
            spread = [shot.start_s + (j + 0.5) * length / 3 for j in range(3)]
            assert [f.time_s for f in group] == pytest.approx(spread, abs=1 / 25 + 1e-6)


def test_shots_range(bikes: Path) -> None:
    shots = detect_shots(bikes, start_s=2.0, end_s=8.0)
    _assert_tiles(shots, 2.0, 8.0)
    frames = list(sample_frames(bikes, "shots", start_s=2.0, end_s=8.0))
    assert frames and all(2.0 <= f.time_s < 8.0 for f in frames)


# -------------------------------------------------------------------------------------------
# tree.avi: a variable-rate AVI (OpenCV cannot seek it)


def test_tree_every_mode(tree: Path) -> None:
    info = probe(tree)
    requested = [float(t) for t in range(0, 30, 2)]
    frames = list(sample_frames(tree, "interval", 2.0))
    expected = _sequential(tree, requested)
    assert [f.time_s for f in frames] == pytest.approx([t for t, _ in expected])
    assert all(np.array_equal(f.image, im) for f, (_, im) in zip(frames, expected, strict=True))

    keys = list(sample_frames(tree, "keyframes", 5.0))
    key_times = [f.time_s for f in keys]
    assert key_times == sorted(set(key_times))
    assert key_times == pytest.approx(_key_times(tree))

    shots = list(sample_frames(tree, "shots", frames_per_shot=2))
    assert shots
    _assert_tiles(sorted({f.shot for f in shots}, key=lambda s: s.index), 0.0, info.duration_s)
    assert [f.time_s for f in shots] == sorted({f.time_s for f in shots})


# -------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("kind", "words"),
    [("truncated", "truncated"), ("empty", "empty file"), ("text", "not a video")],
)
def test_bad_media_raise_media_error(bad_media: dict[str, Path], kind: str, words: str) -> None:
    path = bad_media[kind]
    with pytest.raises(MediaError, match=words) as err:
        probe(path)
    assert path.name in str(err.value) and "\n" not in str(err.value)
    assert err.value.path == path
    for mode in ("interval", "keyframes", "shots"):
        with pytest.raises(MediaError, match=words):
            next(sample_frames(path, mode))


@pytest.mark.parametrize("name", ["faststart_cut", "avi_cut"])
def test_cut_files_that_still_open(derived: dict[str, Path], name: str) -> None:
    path = derived[name]
    with pytest.raises(MediaError, match="truncated or corrupt") as err:
        probe(path)
    assert path.name in str(err.value)
    with pytest.raises(MediaError, match="truncated or corrupt"):
        list(sample_frames(path, "interval", 2.0))


def test_missing_file_and_range_past_the_end(tmp_path: Path, bikes: Path) -> None:
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "gone.mp4")
    with pytest.raises(MediaError, match="only 10.0 s long"):
        next(sample_frames(bikes, start_s=60.0))


def test_bad_arguments_fail_at_call(bikes: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        sample_frames(bikes, "everything")
    with pytest.raises(ValueError, match="every_s"):
        sample_frames(bikes, "interval", 0.0)
    with pytest.raises(ValueError, match="end_s"):
        sample_frames(bikes, start_s=5.0, end_s=5.0)


@pytest.mark.parametrize("mode", ["interval", "keyframes", "shots"])
def test_a_sampler_samples_a_probed_file_without_probing_it_again(
    bikes: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sampler.frames(path, info) gives exactly sample_frames' frames, from the MediaInfo it
    is handed: the file is opened for decoding, never probed a second time."""
    want = list(sample_frames(bikes, mode, 2.0, start_s=1.0, end_s=9.0, frames_per_shot=2,
                              max_side=160))
    info = probe(bikes)
    sampler = Sampler(mode, 2.0, frames_per_shot=2, max_side=160)
    probed: list[Path] = []
    real = probing_module._probe

    def spy(src):  # every probe, whoever asks for it, goes through _probe
        probed.append(src.path)
        return real(src)

    monkeypatch.setattr(probing_module, "_probe", spy)
    got = list(sampler.frames(bikes, info, 1.0, 9.0))
    assert probed == []
    assert [(f.time_s, f.index, f.shot) for f in got] == [(f.time_s, f.index, f.shot)
                                                          for f in want]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(got, want, strict=True))
    assert len(list(sampler.sample(bikes, 1.0, 9.0))) == len(want)
    assert probed == [bikes]  # sample() probes first, once


def test_a_sampler_from_the_sampling_section(bikes: Path) -> None:
    section = SamplingSettings(mode="shots", every_s=3.0, frames_per_shot=2,
                               shot_threshold=30.0, min_shot_s=1.0, max_side=64)
    assert Sampler.from_section(section) == Sampler("shots", 3.0, 2, 30.0, 1.0, 64)
    with pytest.raises(ValueError, match="mode"):
        Sampler("everything")
    with pytest.raises(ValueError, match="end_s"):
        Sampler().frames(bikes, probe(bikes), 5.0, 5.0)


def test_media_error_survives_pickling(tmp_path: Path) -> None:
    err = MediaError(tmp_path / "x.mp4", "empty file (0 bytes)")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.reason == err.reason and back.path == err.path


# -------------------------------------------------------------------------------------------
# resources


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("mode", ["interval", "keyframes", "shots"])
def test_stopping_early_closes_the_file(bikes: Path, mode: str) -> None:
    assert _open_fds(bikes) == 0
    for _ in sample_frames(bikes, mode, 1.0):
        assert _open_fds(bikes) == 1
        break
    assert _open_fds(bikes) == 0

    frames = sample_frames(bikes, mode, 1.0)
    next(frames)
    frames.close()  # a consumer keeping a reference closes it explicitly
    assert _open_fds(bikes) == 0
