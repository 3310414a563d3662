"""Shot detectors (indexer.media.shot_detectors): the registry, ``content`` unchanged, the
dissolve- and fade-aware detectors on a small generated episode (bench/make_episode.py),
the settings and the CLI option."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

from indexer.indexing import config_version
from indexer.media import Sampler, detect_shots, probe
from indexer.media.shot_detectors import (
    DetectorOptions,
    apply_min_shot,
    create_shot_detector,
    list_shot_detectors,
)
from tvindex.settings import ConfigError, load_settings
from tvindex.settings.sections import AggregationSettings, SamplingSettings

REPO = Path(__file__).resolve().parent.parent
TOLERANCE = 2  # frames, as bench/shots.py


def _make_episode():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        return importlib.import_module("make_episode").make_episode
    finally:
        sys.path.remove(str(REPO / "bench"))


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> tuple[Path, dict]:
    """16 s at 320x180 with dissolves and fades (seeded; built in about a second)."""
    if not any((shared_dir / "transfer").glob("*.jpg")):
        pytest.skip("no transfer photos in the shared kit")
    out = tmp_path_factory.mktemp("episode") / "ep.mp4"
    truth = _make_episode()(
        out, duration_s=16.0, width=320, height=180, seed=7, preset="ultrafast",
        mix={"cut": 0.3, "dissolve": 0.4, "fade": 0.3}, mean_shot_s=2.2,
        photos_dir=shared_dir / "transfer",
    )
    assert truth["counts"]["dissolve"] >= 1 and truth["counts"]["fade"] >= 1
    return out, truth


def _matched(truth: dict, times: list[float], kinds: tuple[str, ...]) -> tuple[int, int]:
    """(transitions of ``kinds`` found, detections matching no transition at all)."""
    fps, found, used = truth["fps"], 0, set()
    for t in times:
        f = round(t * fps)
        hits = [i for i, tr in enumerate(truth["transitions"]) if i not in used
                and tr["start_frame"] - TOLERANCE <= f <= tr["end_frame"] + TOLERANCE]
        if hits:
            used.add(hits[0])
    for i in used:
        found += truth["transitions"][i]["type"] in kinds
    return found, len(times) - len(used)


def _cuts(name: str, path: Path) -> list[float]:
    info = probe(path)
    return create_shot_detector(name).cuts(path, info, 0.0, info.duration_s, 0.6)


# -- the registry


def test_registry_names_match_the_setting() -> None:
    names = list_shot_detectors()
    assert names[0] == "content"
    assert set(names) == {"content", "gradual", "transnetv2", "hybrid"}
    literal = typing.get_args(SamplingSettings.model_fields["shot_detector"].annotation)
    assert set(literal) == set(names)


def test_unknown_detector_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown shot detector 'nope'.*content, gradual"):
        create_shot_detector("nope")


def test_detectors_are_built_once_per_options() -> None:
    a = create_shot_detector("content")
    assert create_shot_detector("content") is a
    assert create_shot_detector("content", DetectorOptions(threshold=20.0)) is not a
    assert a.name == "content"


def test_min_shot_rule() -> None:
    assert apply_min_shot([5.0, 1.0, 1.3, 9.8], 0.0, 10.0, 0.6) == [1.0, 5.0]
    assert apply_min_shot([0.0, 10.0, 11.0], 0.0, 10.0, 0.6) == []


# -- content: today's results


def test_content_is_unchanged_on_shared_footage(video_dir: Path) -> None:
    # starts measured with the rule before the registry existed (commit e7fb477)
    bikes = video_dir / "bikes.mp4"
    shots = detect_shots(bikes)
    assert [round(s.start_s, 6) for s in shots] == [0.0, 1.2, 3.04, 5.48, 7.48]
    assert detect_shots(bikes, threshold=15.0, detector="content")[2].start_s == pytest.approx(2.8)
    part = detect_shots(bikes, start_s=2.0, end_s=8.0)
    assert [round(s.start_s, 6) for s in part] == [2.0, 3.04, 5.48]
    assert part[-1].end_s == 8.0


# -- dissolves and fades


def test_gradual_finds_the_dissolves_and_fades_content_misses(episode) -> None:
    path, truth = episode
    gradual = ("dissolve", "fade")
    n_gradual = sum(t["type"] in gradual for t in truth["transitions"])
    content_found, _ = _matched(truth, _cuts("content", path), gradual)
    found, false = _matched(truth, _cuts("gradual", path), gradual)
    cuts_found, _ = _matched(truth, _cuts("gradual", path), ("cut",))
    assert found == n_gradual
    assert cuts_found == truth["counts"]["cut"]
    assert false == 0
    assert content_found < n_gradual


def test_shots_sampling_uses_the_chosen_detector(episode) -> None:
    path, truth = episode
    info = probe(path)
    frames = list(Sampler(mode="shots", shot_detector="gradual", max_side=64).frames(path, info))
    shots = {f.shot for f in frames}
    assert len(shots) == len(truth["transitions"]) + 1
    assert all(f.shot.start_s <= f.time_s < f.shot.end_s for f in frames)
    content = list(Sampler(mode="shots", max_side=64).frames(path, info))
    assert len({f.shot for f in content}) < len(shots)
    assert detect_shots(path, detector="gradual") == sorted(shots, key=lambda s: s.index)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["transnetv2", "hybrid"])
def test_network_detectors_find_every_transition(episode, name: str) -> None:
    path, truth = episode
    kinds = ("cut", "dissolve", "fade")
    found, false = _matched(truth, _cuts(name, path), kinds)
    assert found == len(truth["transitions"])
    assert false == 0


@pytest.mark.slow
def test_streamed_windows_equal_the_packages_own(episode) -> None:
    import torch

    from indexer.media.shot_detectors.thumbs import tiny_frames
    from indexer.media.shot_detectors.transnet import TransNetModel, block_predictions

    path, _ = episode
    info = probe(path)
    thumbs = [x for _, x in tiny_frames(path, info, 0.0, 5.0)]  # 125 frames: 3 blocks
    model = TransNetModel("cpu")
    ours = block_predictions(iter(thumbs), model)
    single, _ = model.net.predict_frames(torch.from_numpy(np.stack(thumbs)), quiet=True)
    np.testing.assert_allclose(ours, single.numpy(), atol=1e-4)
    # the package's global side effects were put back
    assert not torch.are_deterministic_algorithms_enabled()


# -- settings and CLI


def test_bad_settings_give_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"sampling.shot_detector.*'content', 'gradual'"):
        load_settings(overrides={"sampling.shot_detector": "scenedetect"})
    with pytest.raises(ConfigError, match="sampling.transition_threshold"):
        load_settings(overrides={"sampling.transition_threshold": 1.5})
    with pytest.raises(ValueError, match="unknown shot detector"):
        Sampler(mode="shots", shot_detector="nope")
    with pytest.raises(ValueError, match="transition_threshold"):
        Sampler(mode="shots", shot_detector="transnetv2", transition_threshold=0.0)
    with pytest.raises(ValueError, match="unknown shot detector"):
        detect_shots("/nonexistent.mp4", detector="nope")


def test_settings_reach_the_sampler_and_the_config_version() -> None:
    s = load_settings(overrides={"sampling.mode": "shots", "sampling.shot_detector": "hybrid",
                                 "sampling.transition_threshold": 0.4})
    sampler = Sampler.from_section(s.sampling)
    assert (sampler.shot_detector, sampler.transition_threshold) == ("hybrid", 0.4)
    agg = AggregationSettings()
    default = SamplingSettings()
    # the default detector hashes as before the setting existed
    old = SamplingSettings().model_dump(mode="json")
    del old["shot_detector"], old["transition_threshold"]
    assert config_version([], None, default, agg) == config_version(
        [], None, _Dumped(old), agg)  # type: ignore[arg-type]
    assert config_version([], None, SamplingSettings(shot_detector="gradual"), agg) != \
        config_version([], None, default, agg)


class _Dumped:
    """A sampling section as it was before the detector keys (only what config_version reads)."""

    shot_detector, transition_threshold = "other", 0.0

    def __init__(self, dump: dict) -> None:
        self._dump = dump

    def model_dump(self, mode: str, exclude: set[str]) -> dict:
        return dict(self._dump)


def test_cli_offers_and_checks_the_option() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tvindex.cli", "tag", "x.mp4", "--sampling", "shots",
         "--shot-detector", "nope"],
        check=False, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 2
    assert "--shot-detector" in run.stderr and "gradual" in run.stderr


def test_make_episode_truth_is_consistent(episode) -> None:
    path, truth = episode
    saved = json.loads(Path(str(path) + ".json").read_text())
    assert saved["transitions"] == truth["transitions"]
    info = probe(path)
    assert (info.width, info.height) == (320, 180)
    assert abs(info.duration_s - 16.0) < 0.1
    for tr in truth["transitions"]:
        assert tr["start_frame"] <= tr["end_frame"]
        if tr["type"] == "dissolve":
            assert tr["end_frame"] - tr["start_frame"] + 1 == 12
    frames = [t["start_frame"] for t in truth["transitions"]]
    assert frames == sorted(frames)
