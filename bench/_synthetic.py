"""Shared helpers of the benchmarks: the shared kit, the two real offline taggers, a bank of
real probability vectors, synthetic shots resampled from it, and peak-memory measurement.

Synthetic tags follow real footage: :func:`probability_bank` runs the real taggers
(``tflite-detector``: coco80, sigmoid; ``timm-classifier``: imagenet1k, softmax) once over real
photographs of ``shared/transfer`` and frames of the shared videos and keeps their probability
vectors. :class:`ShotSynthesiser` builds every synthetic shot from 1-3 of those real frame
vectors (drawn from its programme's "palette" of real frames, so a programme looks alike from
episode to episode), each with a little multiplicative noise (log-normal, i.e. additive in log
space), clipped to [0, 1] and renormalised for softmax sets; the shot's score is the frames'
mean and its coverage the share of frames at or above the label set's threshold, exactly what
``tvindex.core.stats`` computes for real frames. Per-label marginals and co-occurrences therefore
follow the real frames. Nothing here writes inside the repository.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TAGGER_NAMES = ("tflite-detector", "timm-classifier")
VIDEO_NAMES = ("vtest.avi", "bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4", "tree.avi")


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Where things are


def shared_dir() -> Path:
    """$TVINDEX_SHARED_DIR, else ../shared beside the repository."""
    env = os.environ.get("TVINDEX_SHARED_DIR")
    return Path(env) if env else REPO.parent / "shared"


def model_dir() -> Path:
    env = os.environ.get("TVINDEX_MODEL_DIR")
    return Path(env) if env else shared_dir() / "models"


def scratch_dir(name: str) -> Path:
    """A cache folder outside the repository: $TVINDEX_DATA_DIR/bench/<name>, else
    <tmp>/tvindex-bench/<name>. A data dir inside the repository is not used."""
    env = os.environ.get("TVINDEX_DATA_DIR")
    if env:
        base = Path(env).resolve()
        if base != REPO and REPO not in base.parents:
            return base / "bench" / name
    return Path(tempfile.gettempdir()) / "tvindex-bench" / name


def check_outside_repo(path: Path) -> Path:
    path = Path(path).resolve()
    if path == REPO or REPO in path.parents:
        raise SystemExit(f"{path}: benchmark data must live outside the repository")
    return path


def bench_settings(overrides: dict | None = None):
    """Settings with the shared models, CPU taggers, and ``overrides`` (dotted keys)."""
    from tvindex.settings import load_settings

    base = {"paths.model_dir": str(model_dir()), "paths.shared_dir": str(shared_dir()),
            "taggers.device": "cpu", "taggers.active": list(TAGGER_NAMES)}
    base.update(overrides or {})
    return load_settings(overrides=base)


def real_taggers(settings) -> list:
    from indexer.taggers import tagger_from_settings

    return [tagger_from_settings(name, settings) for name in TAGGER_NAMES]


# ---------------------------------------------------------------------------------------------
# Real frames and their probabilities


def real_images(n_photos: int, video_every_s: float, seed: int = 0,
                max_side: int = 720) -> list[tuple[str, np.ndarray]]:
    """``n_photos`` photographs of shared/transfer (a seeded sample) and one frame every
    ``video_every_s`` seconds of each shared video, as (source, RGB uint8 image)."""
    import cv2

    from indexer.media import MediaError, sample_frames

    out: list[tuple[str, np.ndarray]] = []
    photos = sorted((shared_dir() / "transfer").glob("*.jpg"))
    if n_photos and not photos:
        raise SystemExit(f"no photographs in {shared_dir() / 'transfer'} "
                         "(set TVINDEX_SHARED_DIR)")
    rng = np.random.default_rng(seed)
    for i in sorted(rng.choice(len(photos), size=min(n_photos, len(photos)), replace=False)):
        bgr = cv2.imread(str(photos[i]), cv2.IMREAD_COLOR)
        if bgr is not None:
            out.append((photos[i].name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    for name in VIDEO_NAMES:
        path = shared_dir() / "media" / "video" / name
        if not path.is_file():
            continue
        try:
            for f in sample_frames(path, "interval", video_every_s, max_side=max_side):
                out.append((f"{name}@{f.time_s:.1f}", f.image))
        except MediaError as exc:  # tree.avi cannot seek; keep what came
            log(f"  ({exc})")
    return out


def tag_images(taggers: Sequence, images: Sequence[np.ndarray], batch_size: int = 16
               ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """Run every tagger over the images in batches. Returns ({label set: probabilities
    [N, n]}, {tagger: {"ms_per_frame", "frames_per_s", "frames"}}) - wall time of ``predict``
    (preprocessing and inference, as the indexer calls it)."""
    probs: dict[str, list[np.ndarray]] = {}
    timing: dict[str, dict[str, float]] = {}
    for tagger in taggers:
        t0 = time.perf_counter()
        for start in range(0, len(images), batch_size):
            for name, logits in tagger.predict(list(images[start:start + batch_size])).items():
                probs.setdefault(name, []).append(tagger.label_set(name).probabilities(logits))
        wall = time.perf_counter() - t0
        timing[tagger.name] = {"frames": len(images),
                               "ms_per_frame": round(1000 * wall / max(1, len(images)), 2),
                               "frames_per_s": round(len(images) / wall, 2) if wall else None}
    return {k: np.concatenate(v) for k, v in probs.items()}, timing


def time_taggers(taggers: Sequence, images: Sequence[np.ndarray], batch_size: int = 16,
                 repeats: int = 2) -> dict[str, dict[str, float]]:
    """Per-frame cost of each tagger on ``images``: one warm-up pass, then the best of
    ``repeats`` passes (ms per frame, frames per second)."""
    tag_images(taggers, images[:batch_size], batch_size)  # warm-up (lazy init, caches)
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        _, timing = tag_images(taggers, images, batch_size)
        for name, t in timing.items():
            if name not in best or t["ms_per_frame"] < best[name]["ms_per_frame"]:
                best[name] = t
    best["all"] = {"frames": len(images),
                   "ms_per_frame": round(sum(t["ms_per_frame"] for t in best.values()), 2)}
    best["all"]["frames_per_s"] = round(1000 / best["all"]["ms_per_frame"], 2)
    return best


@dataclass
class Bank:
    """Real probability vectors: per label set, [N, n] float32, rows = real frames."""

    probs: dict[str, np.ndarray]
    label_sets: list  # LabelSet, in tagger order
    sources: list[str]
    thresholds: dict[str, float]
    identity: str

    def summary(self, top: int = 5) -> dict:
        out = {"frames": len(self.sources),
               "photos": sum("@" not in s for s in self.sources),
               "video_frames": sum("@" in s for s in self.sources), "label_sets": {}}
        for ls in self.label_sets:
            p = self.probs[ls.name]
            mean = p.mean(axis=0)
            order = np.argsort(-mean)[:top]
            out["label_sets"][ls.name] = {
                "activation": ls.activation, "labels": len(ls),
                "mean_top": {ls.labels[i]: round(float(mean[i]), 4) for i in order},
                "mean_labels_over_0.05_per_frame": round(float((p >= 0.05).sum(1).mean()), 2)}
        return out


def probability_bank(cache_dir: Path, n_photos: int = 150, video_every_s: float = 2.0,
                     seed: int = 0, taggers: Sequence | None = None, settings=None,
                     rebuild: bool = False) -> Bank:
    """Tag real frames once with the real taggers (cached in ``cache_dir/bank-*.npz``, keyed
    by the taggers' identities and the sample)."""
    from indexer.frame_tagging import label_sets_of
    from tvindex.core.stats import threshold_for

    settings = settings or bench_settings()
    taggers = list(taggers) if taggers is not None else real_taggers(settings)
    label_sets = label_sets_of(taggers)
    thresholds = {ls.name: threshold_for(ls, settings.aggregation.coverage_threshold)
                  for ls in label_sets}
    key = json.dumps({"taggers": [t.identity() for t in taggers], "photos": n_photos,
                      "video_every_s": video_every_s, "seed": seed}, sort_keys=True)
    ident = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"bank-{ident}.npz"
    if path.is_file() and not rebuild:
        data = np.load(path, allow_pickle=False)
        probs = {ls.name: data[ls.name] for ls in label_sets}
        return Bank(probs, label_sets, list(data["sources"]), thresholds, ident)
    log(f"tagging real frames for the probability bank ({n_photos} photos + video frames)...")
    images = real_images(n_photos, video_every_s, seed)
    probs, timing = tag_images(taggers, [im for _, im in images],
                               settings.taggers.batch_size)
    log(f"  {len(images)} frames tagged: {timing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, sources=np.asarray([s for s, _ in images]), **probs)
    tmp.replace(path)
    return Bank(probs, label_sets, [s for s, _ in images], thresholds, ident)


# ---------------------------------------------------------------------------------------------
# Synthetic catalogue


def programme_id(p: int) -> str:
    return f"prog{p:03d}"


def episode_id(p: int, e: int) -> str:
    return f"prog{p:03d}-ep{e:04d}"


class ShotSynthesiser:
    """Synthetic shots from real probability vectors (see the module docstring).

    Deterministic: episode ``(p, e)`` is always the same, so an episode can be regenerated
    and rewritten identically. ``palette``: how many real frames a programme draws from (a
    seeded random subset with Dirichlet weights); ``p_outside``: the chance a frame comes from
    the whole bank instead; ``noise``: sigma of the log-normal factor on each frame vector.
    """

    def __init__(self, bank: Bank, seed: int = 0, palette: tuple[int, int] = (12, 40),
                 p_outside: float = 0.1, noise: float = 0.2, frames_per_shot=(1, 3),
                 mean_shot_s: float = 5.0) -> None:
        self.bank, self.seed = bank, seed
        self.palette, self.p_outside, self.noise = palette, p_outside, noise
        self.frames_per_shot, self.mean_shot_s = frames_per_shot, mean_shot_s
        self.n_bank = len(bank.sources)
        self._palettes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def programme_palette(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        if p not in self._palettes:
            rng = np.random.default_rng([self.seed, 1, p])
            m = int(rng.integers(self.palette[0], self.palette[1] + 1))
            idx = rng.choice(self.n_bank, size=min(m, self.n_bank), replace=False)
            self._palettes[p] = (idx, rng.dirichlet(np.ones(len(idx))))
        return self._palettes[p]

    def shots(self, p: int, e: int, n_shots: int):
        """Per label set: (score [S, n], coverage [S, n]); frames per shot [S]; starts,
        ends [S] (seconds)."""
        rng = np.random.default_rng([self.seed, 2, p, e])
        idx, weights = self.programme_palette(p)
        lo, hi = self.frames_per_shot
        k = rng.integers(lo, hi + 1, size=n_shots)  # frames per shot
        kmax = int(k.max())
        drawn = idx[rng.choice(len(idx), size=(n_shots, kmax), p=weights)]
        outside = rng.random((n_shots, kmax)) < self.p_outside
        drawn[outside] = rng.integers(0, self.n_bank, size=int(outside.sum()))
        valid = (np.arange(kmax)[None, :] < k[:, None])  # [S, kmax]
        out = {}
        for ls in self.bank.label_sets:
            frames = self.bank.probs[ls.name][drawn]  # [S, kmax, n]
            frames = frames * np.exp(self.noise * rng.standard_normal(frames.shape,
                                                                      np.float32))
            np.clip(frames, 0.0, 1.0, out=frames)
            if ls.activation == "softmax":
                frames /= frames.sum(axis=-1, keepdims=True)
            frames *= valid[..., None]
            score = frames.sum(axis=1) / k[:, None]
            cover = ((frames >= self.bank.thresholds[ls.name]) & valid[..., None]).sum(axis=1)
            out[ls.name] = (score.astype(np.float32), (cover / k[:, None]).astype(np.float32))
        dur = np.clip(rng.lognormal(np.log(self.mean_shot_s), 0.6, size=n_shots), 1.0, 60.0)
        ends = np.round(np.cumsum(dur), 3)
        starts = np.concatenate([[0.0], ends[:-1]])
        return out, k, starts, ends

    def episode_tags(self, p: int, e: int, n_shots: int, thumbnail: bytes = b""):
        from tvindex.core.records import EpisodeTags, LabelStats, SegmentTags

        stats, k, starts, ends = self.shots(p, e, n_shots)
        segments = []
        for s in range(n_shots):
            segments.append(SegmentTags(
                index=s, start_s=float(starts[s]), end_s=float(ends[s]),
                time_s=round(float(starts[s] + ends[s]) / 2, 3),
                stats={name: LabelStats(sc[s], cv[s], int(k[s]))
                       for name, (sc, cv) in stats.items()},
                thumbnail=thumbnail))
        n = int(k.sum())
        ep_stats = {name: LabelStats((sc * k[:, None]).sum(0).astype(np.float32) / n,
                                     (cv * k[:, None]).sum(0).astype(np.float32) / n, n)
                    for name, (sc, cv) in stats.items()}
        return EpisodeTags(episode_id(p, e), f"synthetic-{self.seed}-{p}-{e}",
                           f"synthetic-{self.bank.identity}", float(ends[-1]), segments,
                           ep_stats, "shots")


def catalogue_records(n_programmes: int, n_episodes: int, seed: int = 0):
    """Programmes and episodes (episode e of programme p round-robin) with air dates."""
    from tvindex.core.records import EpisodeRecord, ProgrammeRecord

    genres = ("news", "documentary", "drama", "sport", "children", "entertainment", "music")
    progs = [ProgrammeRecord(programme_id(p), f"Programme {p:03d}", genre=genres[p % 7])
             for p in range(n_programmes)]
    rng = np.random.default_rng([seed, 3])
    day0 = dt.date(2010, 1, 1)
    eps, plan = [], []
    for i in range(n_episodes):
        p, e = i % n_programmes, i // n_programmes
        eps.append(EpisodeRecord(episode_id(p, e), programme_id(p), f"Episode {e}",
                                 f"/synthetic/{episode_id(p, e)}.mxf",
                                 day0 + dt.timedelta(days=int(rng.integers(0, 5000)))))
        plan.append((p, e))
    return progs, eps, plan


# ---------------------------------------------------------------------------------------------
# Statistics


def percentiles(values_s: Sequence[float]) -> dict[str, float]:
    """Latencies in seconds -> {n, p50/p95/p99/max/mean in ms}."""
    a = np.asarray(values_s, np.float64) * 1000
    if not len(a):
        return {"n": 0}
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2),
            "max_ms": round(float(a.max()), 2), "mean_ms": round(float(a.mean()), 2)}


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# ---------------------------------------------------------------------------------------------
# Synthesis in worker processes (spawned: they load only the bank, never torch models)

_WORKER: dict = {}


def worker_init(bank_npz: str, seed: int, thumbnail_bytes: int,
                thresholds: dict[str, float], sets: list) -> None:
    data = np.load(bank_npz, allow_pickle=False)
    bank = Bank({ls.name: data[ls.name] for ls in sets}, sets, list(data["sources"]),
                dict(thresholds), Path(bank_npz).stem.removeprefix("bank-"))
    _WORKER["synth"] = ShotSynthesiser(bank, seed=seed)
    _WORKER["thumb"] = (b"\xff\xd8" + bytes(max(0, thumbnail_bytes - 2))
                        if thumbnail_bytes else b"")


def worker_episode(job: tuple[int, int, int]):
    p, e, n_shots = job
    return _WORKER["synth"].episode_tags(p, e, n_shots, _WORKER["thumb"])
