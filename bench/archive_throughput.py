"""Archive throughput: how fast `tvindex index` gets through broadcast-like 1080p episodes,
against the decode-only and decode+inference limits measured in the same run.

Episodes come from ``bench/make_episode.py`` (1080p25 H.264, GOP 2 s, the transfer photos with
slow camera moves, cuts, dissolves and fades); ``--quick`` makes small ones (480x270, 20 s)
for a smoke run. The catalogue lists them again and again (as distinct episodes, each
decoded and tagged on its own) until it holds ``--catalogue-hours`` of video, so a 1-hour
catalogue costs minutes to generate, not an hour.

Measured, in one run:

1. ``decode_limit``: per sampling mode (keyframes, interval, shots), sampling every episode
   once in this process (one core): seconds and real-time factor (``x_realtime``: seconds
   of video per wall-clock second).
2. ``inference``: per tagger set (teachers ``tflite-detector`` + ``timm-classifier`` as the
   demo config runs them; ``student`` with ``--student``; ``student-onnx`` with
   ``--student-onnx`` when that tagger is registered), frames/s on the keyframes-mode
   frames, and the decode+inference limit of one core for each mode
   (``video_s / (decode_s + frames / frames_per_s)``).
   ``keyframes`` runs over the ``--catalogue-hours`` catalogue; ``interval`` and ``shots``
   (which decode far more per hour) over the generated episodes once (each as two halves
   when their number is odd, so two workers share the work evenly).
3. ``index``: ``tvindex index`` as a user runs it (a fresh process and data dir, start-up,
   model loading and writing included) for each mode x tagger set x ``--workers`` (1, 2) on
   the local engine, and with ``--ray`` the Ray engine for the same modes and sets (the job
   starts its own one-machine cluster, as ``--engine ray`` without an address does), with
   ``--ray-cluster`` the Ray engine on a one-machine cluster started once before the runs
   (``ray start --head``, then one untimed job; the job connects to it, as production jobs
   do); rounds interleaved, medians and spread (max-min over the median) reported, with
   ``cores_busy``: the run's CPU seconds (its decode workers' included) over its wall
   time, of ``cores`` available.

The targets of issue 18 are checked against these numbers and printed as ``targets``.
The machine's load average is recorded before and after: the numbers are only as good as
the machine was quiet.

    python bench/archive_throughput.py --episodes 3 --duration 300 --catalogue-hours 1 \\
        --student var/models/student.pt --student-onnx var/models/student.int8.onnx --ray
    python bench/archive_throughput.py --quick          # a smoke run (~2 min)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

MODES = ("keyframes", "interval", "shots")


def generate(folder: Path, episodes: int, duration: float, width: int, height: int,
             preset: str) -> list[dict]:
    from make_episode import make_episode

    out = []
    for i in range(episodes):
        path = folder / f"episode-{i}.mp4"
        truth_path = Path(str(path) + ".json")
        if path.is_file() and truth_path.is_file():
            truth = json.loads(truth_path.read_text())
        else:
            truth = make_episode(path, duration_s=duration, width=width, height=height,
                                 seed=i, preset=preset)
        out.append({"path": str(path), "duration_s": truth["duration_s"],
                    "generated_s": truth.get("seconds")})
    return out


def manifest(folder: Path, episodes: list[dict], hours: float | None, parts: int = 1
             ) -> tuple[Path, float]:
    """A CSV catalogue listing the episodes, repeated until ``hours`` of video; ``parts`` > 1
    lists each file as that many consecutive episodes (time ranges of it), so the work
    divides evenly between workers (3 files on 2 workers leave one idle a third of the
    time)."""
    rows, total, k = [], 0.0, 0
    target = hours * 3600 if hours else sum(e["duration_s"] for e in episodes)
    while total < target - 1e-6:
        e = episodes[k % len(episodes)]
        if parts > 1:
            cut = [round(e["duration_s"] * i / parts, 3) for i in range(parts + 1)]
            rows += [f"Archive,ep{k:04d}-{i},{e['path']},{cut[i]},{cut[i + 1]}"
                     for i in range(parts)]
        else:
            rows.append(f"Archive,ep{k:04d},{e['path']},,")
        total += e["duration_s"]
        k += 1
    m = folder / "catalogue.csv"
    m.write_text("programme,episode_id,media_path,start_s,end_s\n" + "\n".join(rows) + "\n")
    return m, total


def decode_limit(episodes: list[dict], every: float, modes: list[str]) -> dict:
    from indexer.media import Sampler, probe

    out = {}
    for mode in modes:
        sampler = Sampler(mode, every, max_side=720)
        t0, frames = time.perf_counter(), 0
        for e in episodes:
            info = probe(e["path"])
            frames += sum(1 for _ in sampler.frames(e["path"], info))
        s = time.perf_counter() - t0
        video = sum(e["duration_s"] for e in episodes)
        out[mode] = {"seconds": round(s, 3), "frames": frames,
                     "x_realtime": round(video / s, 1)}
    return out


def tagger_sets(args) -> dict[str, dict]:
    """name -> environment overrides that make `tvindex index` run those taggers."""
    from indexer.taggers import list_taggers

    sets = {"teachers": {"TVINDEX__TAGGERS__ACTIVE": "[tflite-detector, timm-classifier]"}}
    if args.student:
        sets["student"] = {"TVINDEX__TAGGERS__ACTIVE": "[student]",
                           "TVINDEX__TAGGERS__STUDENT__CHECKPOINT": str(args.student)}
    if args.student_onnx and "student-onnx" in list_taggers():
        sets["student-onnx"] = {"TVINDEX__TAGGERS__ACTIVE": "[student-onnx]",
                                "TVINDEX__TAGGERS__STUDENT_ONNX__MODEL": str(args.student_onnx)}
    return sets


def inference(env_sets: dict[str, dict], episodes: list[dict], every: float,
              repeats: int) -> dict:
    """Frames/s of each tagger set on the keyframes frames of the episodes (repeated to at
    least 64; one process, as indexing runs them), interleaved rounds, median."""
    code = r'''
import json, os, sys, time
from indexer.media import Sampler, probe
from indexer.frame_tagging import choose_embedder, tag_frames
from indexer.taggers import taggers_from_settings
from tvindex.settings import load_settings
paths, every, repeats = json.loads(sys.argv[1])
s = load_settings(None, {})
frames = [f for p in paths for f in Sampler("keyframes", every, max_side=720).frames(p, probe(p))]
frames = (frames * (1 + 64 // max(1, len(frames))))[:max(64, len(frames))]  # >= 64 timed
taggers = taggers_from_settings(s)
emb = choose_embedder(taggers, s.taggers.embedding)
list(tag_frames(frames[:s.taggers.batch_size], taggers, s.taggers.batch_size, embedder=emb))
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    for _t in tag_frames(frames, taggers, s.taggers.batch_size, embedder=emb):
        pass
    times.append(time.perf_counter() - t0)
print(json.dumps({"frames": len(frames), "times": times}))
'''
    arg = json.dumps([[e["path"] for e in episodes], every, 1])
    out: dict[str, dict] = {name: {"times": []} for name in env_sets}
    for _ in range(repeats):  # interleaved: one pass of each set per round
        for name, env in env_sets.items():
            r = subprocess.run([sys.executable, "-c", code, arg], env=dict(os.environ, **env),
                               capture_output=True, text=True, check=False, cwd=REPO)
            if r.returncode != 0:
                out[name]["error"] = r.stderr.strip().splitlines()[-1:]
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            out[name]["frames"] = res["frames"]
            out[name]["times"] += res["times"]
    for v in out.values():
        if v["times"]:
            med = statistics.median(v["times"])
            v["frames_per_s"] = round(v["frames"] / med, 1)
            v["spread"] = round((max(v["times"]) - min(v["times"])) / med, 3)
    return out


def index_command(manifest_path: Path, data: str, workers: int, engine: str,
                  threads: int = 0) -> list[str]:
    """`tvindex index` as a user runs it, on ``engine`` (local, ray: the job starts its own
    cluster, ray-cluster: it joins the one ``ray_cluster`` started)."""
    cmd = [sys.executable, "-m", "tvindex.cli", "index", str(manifest_path), "--no-progress",
           "--json", "--data-dir", data, "--engine", "local" if engine == "local" else "ray",
           "--decode-threads", str(threads)]
    if engine == "local":
        cmd += ["--workers", str(workers)]
    elif engine == "ray-cluster":  # the one-machine cluster started by ray_cluster()
        cmd += ["--ray-address", "auto"]
    return cmd


def run_index(manifest_path: Path, env: dict, workers: int, engine: str,
              threads: int = 0) -> dict:
    data = tempfile.mkdtemp(prefix="archive-bench-")
    cmd = index_command(manifest_path, data, workers, engine, threads)
    t0, used0 = time.perf_counter(), _children_cpu()
    r = subprocess.run(cmd, env=dict(os.environ, **env), capture_output=True, text=True,
                       check=False, cwd=REPO)
    wall = time.perf_counter() - t0
    cores = (_children_cpu() - used0) / wall
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1], "wall_s": wall}
    rep = json.loads(r.stdout)
    subprocess.run(["rm", "-rf", data], check=False)
    return {"wall_s": wall, "frames": rep["frames"], "indexed": rep["indexed"],
            "cores_busy": round(cores, 2)}


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children and theirs: the
    index run and its decode workers (Ray's processes belong to the cluster, not to it)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def ray_running() -> bool:
    """Whether a Ray cluster runs on this machine already (a job started without an address
    joins it, so the ``ray`` runs would not start their own)."""
    return subprocess.run(["pgrep", "-f", "gcs_server"], capture_output=True,
                          check=False).returncode == 0


class ray_cluster:
    """A one-machine Ray cluster (``ray start --head``) for the runs inside, stopped after:
    how a cluster is used in production, started once and given many jobs, so the runs'
    times leave its start-up out (the ``ray`` runs include a cluster started by the job).
    ``warm_up``: `run_index`'s arguments for one untimed job run once the cluster is up (a
    new cluster's first job also starts Ray Data's cluster-wide helper actors: stats,
    autoscaling, ..., which a running cluster has)."""

    def __init__(self, enabled: bool, warm_up: tuple[Path, dict] | None = None) -> None:
        self.enabled = enabled
        self.warm_up = warm_up
        self.ray = str(Path(sys.executable).with_name("ray"))

    def __enter__(self) -> Self:
        if self.enabled:
            subprocess.run([self.ray, "start", "--head", f"--num-cpus={os.cpu_count()}",
                            "--include-dashboard=false", "--disable-usage-stats"],
                           check=True, capture_output=True)
            if self.warm_up is not None:
                run_index(*self.warm_up, 0, "ray-cluster")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            subprocess.run([self.ray, "stop", "--force"], check=False, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--duration", type=float, default=300.0, help="seconds per episode")
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--preset", default="superfast")
    p.add_argument("--catalogue-hours", type=float, default=None,
                   help="list the episodes again until the catalogue holds this much video")
    p.add_argument("--every", type=float, default=10.0, help="sampling.every_s")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of index runs")
    p.add_argument("--student", type=Path, help="student checkpoint (student torch runs)")
    p.add_argument("--student-onnx", type=Path, help="student ONNX model (student-onnx runs)")
    p.add_argument("--ray", action="store_true", help="also the Ray engine (every mode)")
    p.add_argument("--ray-cluster", action="store_true",
                   help="also the Ray engine on a one-machine cluster started once before "
                        "the runs (every mode; its start-up left out, as in production)")
    p.add_argument("--decode-threads", nargs="+", type=int, default=[0],
                   help="threads per decoder for the local runs (0: FFmpeg's choice; each "
                        "value is a run of its own, keys end /tN when N > 0)")
    p.add_argument("--sets", nargs="+", choices=["teachers", "student", "student-onnx"],
                   help="only these tagger sets (default: every one given)")
    p.add_argument("--dir", type=Path, default=REPO / "var" / "bench" / "archive")
    p.add_argument("--quick", action="store_true", help="small episodes: a smoke run")
    args = p.parse_args(argv)
    if (args.ray or args.ray_cluster) and ray_running():
        p.error("a Ray cluster is running on this machine: stop it first (ray stop), so that "
                "the ray runs start their own and the ray-cluster runs one of this benchmark's")
    if args.quick:
        args.episodes, args.duration, args.width, args.height = 2, 20.0, 480, 270
        args.preset, args.rounds = "ultrafast", 1
        args.dir = args.dir.parent / "archive-quick"
    args.dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t_gen = time.perf_counter()
    episodes = generate(args.dir, args.episodes, args.duration, args.width, args.height,
                        args.preset)
    gen_s = time.perf_counter() - t_gen
    # keyframes runs over the long catalogue (the 200x target's); interval and shots, which
    # decode far more per hour, over the episodes once.
    long_dir, base_dir = args.dir / "long", args.dir / "base"
    long_dir.mkdir(exist_ok=True)
    base_dir.mkdir(exist_ok=True)
    man, video_s = manifest(long_dir, episodes, args.catalogue_hours)
    base_man, base_video_s = manifest(base_dir, episodes, None,
                                      parts=2 if len(episodes) % 2 else 1)
    common = {"TVINDEX__SAMPLING__EVERY_S": str(args.every)}
    sets = tagger_sets(args)
    if args.sets:
        sets = {k: v for k, v in sets.items() if k in args.sets}
    out: dict = {"cores": os.cpu_count(), "load_before": [round(x, 2) for x in load_before],
                 "episodes": episodes, "generate_s": round(gen_s, 1),
                 "catalogue_video_s": {"keyframes": video_s, "interval": base_video_s,
                                       "shots": base_video_s},
                 "every_s": args.every}
    # The limits of the modes that run.
    measured = [m for m in MODES if m in args.modes]
    out["decode_limit"] = decode_limit(episodes, args.every, measured)
    inf = inference({n: dict(common, **e) for n, e in sets.items()}, episodes, args.every,
                    max(2, args.rounds))
    out["inference"] = inf
    one_video = sum(e["duration_s"] for e in episodes)
    limits = {}
    for mode in measured:
        d = out["decode_limit"][mode]
        for name, r in inf.items():
            if "frames_per_s" in r:
                s = d["seconds"] + d["frames"] / r["frames_per_s"]
                limits[f"{mode}/{name}"] = round(one_video / s, 1)
    out["decode_inference_limit_x_realtime"] = limits

    runs = [(mode, name, w, "local", t) for mode in args.modes for name in sets
            for w in args.workers for t in args.decode_threads]
    for engine in ("ray",) * args.ray + ("ray-cluster",) * args.ray_cluster:
        runs += [(mode, name, 0, engine, 0) for mode in args.modes for name in sets]
    walls: dict[str, list[float]] = {}
    results: dict[str, dict] = {}
    _index_rounds(args, runs, sets, common, man, base_man, walls, results)
    index = {}
    for key, r in results.items():
        if key not in walls:
            index[key] = {"error": r["error"]}
            continue
        med = statistics.median(walls[key])
        v = video_s if key.startswith("keyframes/") else base_video_s
        index[key] = {"wall_s": round(med, 2), "x_realtime": round(v / med, 1),
                      "spread": round((max(walls[key]) - min(walls[key])) / med, 3),
                      "frames": r["frames"], "rounds": len(walls[key]),
                      "cores_busy": r["cores_busy"]}
    out["index"] = index
    out["targets"] = targets(index, limits, video_s)
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))
    return 0


def _index_rounds(args, runs: list, sets: dict, common: dict, man: Path, base_man: Path,
                  walls: dict[str, list[float]], results: dict[str, dict]) -> None:
    """``args.rounds`` interleaved rounds of every run: each round runs each once, the
    ``ray-cluster`` runs last, inside a cluster started for them (outside it, a plain ``ray``
    run would join that cluster instead of starting its own)."""
    for _ in range(args.rounds):
        for on_cluster in (False, True):
            batch = [r for r in runs if (r[3] == "ray-cluster") == on_cluster]
            if not batch:
                continue
            warm = (base_man, dict(common, TVINDEX__SAMPLING__MODE="keyframes",
                                   **sets[batch[0][1]]))
            with ray_cluster(on_cluster, warm):
                for mode, name, w, engine, threads in batch:
                    key = f"{mode}/{name}/{engine}" + (f"/w{w}" if engine == "local" else "")
                    key += f"/t{threads}" if threads else ""
                    env = dict(common, TVINDEX__SAMPLING__MODE=mode, **sets[name])
                    r = run_index(man if mode == "keyframes" else base_man, env, w, engine,
                                  threads)
                    results[key] = r
                    if "error" not in r:
                        walls.setdefault(key, []).append(r["wall_s"])
                    print(f"{key}: {r}", file=sys.stderr)


def targets(index: dict, limits: dict, video_s: float) -> dict:
    """Issue 18's throughput targets, each with the numbers it was judged on."""
    def x(key: str) -> float | None:
        return index.get(key, {}).get("x_realtime")

    t: dict = {}
    best = "student-onnx" if x("keyframes/student-onnx/local/w2") else "teachers"
    k2, lim = x(f"keyframes/{best}/local/w2"), limits.get(f"keyframes/{best}")
    if k2 and lim:
        t["keyframes_vs_limit"] = {"tagger": best, "index_x": k2, "limit_x": lim,
                                   "ratio": round(k2 / lim, 2), "target": 0.7,
                                   "met": k2 / lim >= 0.7}
        t["keyframes_200x"] = {"tagger": best, "index_x": k2, "catalogue_h":
                               round(video_s / 3600, 2), "target": 200, "met": k2 >= 200}
    for mode in MODES:
        for name in ("teachers", "student", "student-onnx"):
            for th in ("", "/t1"):
                a, b = x(f"{mode}/{name}/local/w1{th}"), x(f"{mode}/{name}/local/w2{th}")
                if a and b:
                    t[f"workers_2_vs_1/{mode}/{name}{th}"] = {
                        "ratio": round(b / a, 2), "target": 1.8, "met": b / a >= 1.8,
                        "cores_busy_w1": index[f"{mode}/{name}/local/w1{th}"]["cores_busy"]}
        for name in ("teachers", "student", "student-onnx"):
            for engine in ("ray", "ray-cluster"):
                r, loc = x(f"{mode}/{name}/{engine}"), x(f"{mode}/{name}/local/w2")
                if r and loc:
                    t[f"{engine}_vs_local/{mode}/{name}"] = {
                        "ratio": round(r / loc, 2), "target": 0.85, "met": r / loc >= 0.85}
    return t


if __name__ == "__main__":
    raise SystemExit(main())
