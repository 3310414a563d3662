"""Genre tagging benchmark (issue 19): every model x loss of training/genres on generated
episodes made of real frames (training/genres/synthetic.py; docs/genres.md), on the
order-free and the order-dependent variant, over several seeds.

The pictures (the 446 transfer photos and frames of the shared videos) are embedded once by
the product's embedding tagger (``taggers.embedding``: the offline timm-classifier,
EfficientNet-Lite0 ImageNet features, 1280-d) and cached under ``--cache``
(default ~/.cache/tvindex/genre-bench; never in the repository). The features are projected
to ``--dims`` by PCA fitted on the pictures alone (no labels; cheaper sequence models on
2 CPU cores) and renormalised.

    python bench/genres.py > var/bench/genres.json           # 3 seeds, minutes on 2 cores
    python bench/genres.py --seeds 0 --programmes 40 --epochs 3 --draws 50   # a quick look

Prints JSON: sizes, times, the load average before and after; per variant, model and loss
the mean and standard deviation over seeds of micro/macro/samples precision, recall and F1 at
top-1..5 and thresholded at 0.5, and mAP; the paired differences ASL - BCE (per model) and
LSTM - mean pooling (per loss) of mAP, thresholded micro-F1 and top-1 micro-F1, with 95 %
bootstrap intervals (test episodes resampled within each seed, 1000 draws).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = ("mean-linear", "meanmax-mlp", "lstm", "tcn")
LOSSES = ("bce", "asl")
VARIANTS = {"order-free": False, "order-dependent": True}
PAIRED = ("map", "threshold.micro.f1", "top1.micro.f1")


def shared_dir() -> Path:
    root = os.environ.get("TVINDEX_SHARED_DIR") or str(
        Path(__file__).resolve().parent.parent.parent / "shared")
    return Path(root)


def pictures(shared: Path, frames_per_video: int) -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8 image) of every categorised transfer photo and video frame."""
    from PIL import Image

    from indexer.media import sample_frames
    from training.genres.synthetic import category_of

    out = []
    for path in sorted((shared / "transfer").glob("*.jpg")):
        if category_of(path.name):
            with Image.open(path) as im:
                out.append((path.name, np.asarray(im.convert("RGB"))))
    for path in sorted((shared / "media" / "video").iterdir()):
        name = f"video__{path.stem}"
        if not category_of(name):
            continue
        frames = [f.image for f in sample_frames(path, "interval", 0.5, max_side=480)]
        step = max(1, len(frames) // frames_per_video)
        for i, image in enumerate(frames[::step][:frames_per_video]):
            out.append((f"{name}_{i:03d}", image))
    return out


def embed(cache: Path, frames_per_video: int) -> tuple[list[str], np.ndarray, str]:
    """Names and unit embeddings of the pictures (cached), and the embedder's identity."""
    from indexer.embedder import build_embedder
    from tvindex.settings import load_settings

    shared = shared_dir()
    os.environ.setdefault("TVINDEX_MODEL_DIR", str(shared / "models"))
    settings = load_settings(None, {})
    embedder = build_embedder(settings)
    if embedder is None:
        raise SystemExit("no embedding tagger configured (taggers.embedding)")
    ident = f"{embedder.name}:{getattr(embedder, 'weights_id', '')}"
    key = hashlib.sha256(f"{ident}|{frames_per_video}|{sorted(os.listdir(shared / 'transfer'))}"
                         .encode()).hexdigest()[:16]
    file = cache / f"embeddings-{key}.npz"
    if file.exists():
        with np.load(file) as z:
            return [str(n) for n in z["names"]], z["vectors"], ident
    items = pictures(shared, frames_per_video)
    vecs = []
    for i in range(0, len(items), 16):
        _, feats = embedder.predict_with_embeddings([im for _, im in items[i:i + 16]])
        vecs.append(feats)
    vectors = np.concatenate(vecs).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(file, names=np.asarray([n for n, _ in items]), vectors=vectors)
    return [n for n, _ in items], vectors, ident


def pca(vectors: np.ndarray, dims: int) -> np.ndarray:
    centred = vectors - vectors.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:dims].T
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def flat(metrics: dict[str, Any]) -> dict[str, float]:
    out = {"map": metrics["map"]}
    for key, value in metrics.items():
        if isinstance(value, dict):
            for avg, prf in value.items():
                for name, x in prf.items():
                    out[f"{key}.{avg}.{name}"] = x
    return out


def metric(truth: np.ndarray, probs: np.ndarray, name: str) -> float:
    from training.genres.metrics import evaluate

    return flat(evaluate(truth, probs, ks=(1,)))[name]


def bootstrap(runs_a: list, runs_b: list, name: str, draws: int, seed: int) -> dict[str, Any]:
    """Mean over seeds of metric(b) - metric(a) on the same test episodes, with a 95 %
    percentile interval from resampling each seed's test episodes."""
    rng = np.random.default_rng(seed)
    point = np.mean([metric(t, pb, name) - metric(t, pa, name)
                     for (t, pa), (_, pb) in zip(runs_a, runs_b)])
    diffs = []
    for _ in range(draws):
        per_seed = []
        for (t, pa), (_, pb) in zip(runs_a, runs_b):
            idx = rng.integers(0, len(t), len(t))
            per_seed.append(metric(t[idx], pb[idx], name) - metric(t[idx], pa[idx], name))
        diffs.append(np.mean(per_seed))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"diff": round(float(point), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--programmes", type=int, default=100)
    p.add_argument("--episodes", type=int, default=3, help="episodes per programme")
    p.add_argument("--genres", type=int, default=10)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--hidden", type=int, default=64, help="hidden size of mlp, lstm and tcn")
    p.add_argument("--max-len", type=int, default=32, help="shots per episode fed to a model")
    p.add_argument("--dims", type=int, default=128, help="PCA dimensions (0 = raw features)")
    p.add_argument("--frames-per-video", type=int, default=24)
    p.add_argument("--draws", type=int, default=1000, help="bootstrap draws")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--cache", type=Path,
                   default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                   / "tvindex" / "genre-bench")
    args = p.parse_args(argv)

    import torch

    from training.genres.config import load_genre_config
    from training.genres.fit import train
    from training.genres.synthetic import Pools, category_of, generate

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    names, vectors, ident = embed(args.cache, args.frames_per_video)
    embed_s = time.perf_counter() - t0
    if args.dims:
        vectors = pca(vectors, args.dims)
    by_cat: dict[str, list[np.ndarray]] = {}
    for n, v in zip(names, vectors):
        by_cat.setdefault(category_of(n) or "", []).append(v)
    by_cat.pop("", None)
    result: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": "cuda" if torch.cuda.is_available() else "cpu"},
        "embedder": ident, "pictures": len(names), "embed_or_cache_s": round(embed_s, 1),
        "categories": {c: len(v) for c, v in sorted(by_cat.items())},
        "sizes": {"programmes": args.programmes, "episodes": args.programmes * args.episodes,
                  "genres": args.genres, "dims": args.dims or int(vectors.shape[1]),
                  "epochs": args.epochs, "lr": args.lr, "hidden": args.hidden,
                  "max_len": args.max_len, "seeds": args.seeds},
        "variants": {}, "paired": {}, "seconds": {}}
    probs: dict[tuple, list] = {}
    times: dict[str, list[float]] = {}
    for variant, ordered in VARIANTS.items():
        table: dict[str, dict[str, list[dict[str, float]]]] = {}
        for seed in args.seeds:
            pools = Pools.split({c: np.stack(v) for c, v in by_cat.items()}, seed)
            data, split, genres = generate(pools, ordered=ordered, n_genres=args.genres,
                                           programmes=args.programmes,
                                           episodes_per_programme=args.episodes, seed=seed)
            for model in args.models:  # interleaved: every model and loss on the same data
                for loss in LOSSES:
                    cfg = load_genre_config(overrides={
                        "seed": seed, "model.name": model, "model.hidden": args.hidden,
                        "loss.name": loss, "optim.epochs": args.epochs, "optim.lr": args.lr,
                        "data.max_len": args.max_len})
                    start = time.perf_counter()
                    net, summary = train(cfg, data, split)
                    times.setdefault(model, []).append(time.perf_counter() - start)
                    table.setdefault(f"{model}+{loss}", {}).setdefault("runs", []).append(
                        flat(summary["test"]))
                    truth = data.targets(net.genres, split["test"])
                    probs.setdefault((variant, model, loss), []).append(
                        (truth, net.probabilities(data, split["test"])))
                    print(f"{variant} seed {seed} {model}+{loss}: mAP "
                          f"{summary['test']['map']:.3f} in {times[model][-1]:.1f} s",
                          file=sys.stderr)
            result["sizes"].setdefault("test_episodes", []).append(len(split["test"]))
            result["sizes"]["genre_counts"] = {
                g: int(n) for g, n in zip(genres, data.targets(genres).sum(0))}
        result["variants"][variant] = {
            key: {m: {"mean": round(float(np.mean([r[m] for r in v["runs"]])), 4),
                      "std": round(float(np.std([r[m] for r in v["runs"]])), 4)}
                  for m in v["runs"][0]}
            for key, v in table.items()}
        paired: dict[str, Any] = {}
        for model in args.models:
            a, b = probs[(variant, model, "bce")], probs[(variant, model, "asl")]
            paired[f"asl-bce/{model}"] = {m: bootstrap(a, b, m, args.draws, 0) for m in PAIRED}
        if {"lstm", "mean-linear"} <= set(args.models):
            for loss in LOSSES:
                a, b = probs[(variant, "mean-linear", loss)], probs[(variant, "lstm", loss)]
                paired[f"lstm-mean/{loss}"] = {m: bootstrap(a, b, m, args.draws, 0)
                                               for m in PAIRED}
        result["paired"][variant] = paired
    result["seconds"] = {m: {"median": round(float(np.median(v)), 2),
                             "max": round(float(np.max(v)), 2)} for m, v in times.items()}
    result["load_average"] = {"before": [round(x, 2) for x in load_before],
                              "after": [round(x, 2) for x in os.getloadavg()]}
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
