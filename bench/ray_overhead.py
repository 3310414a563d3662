"""Ray's cost per job and per hour of video, against the local engine's, measured in one run.

`bench/archive_throughput.py` compares the engines on one catalogue size, where a fixed cost
per job (Ray: joining the cluster, starting the job's worker processes, each importing Ray
Data, the tagging actor building the taggers) and a cost per hour of video cannot be told
apart. This benchmark runs `tvindex index` in keyframes mode over catalogues of several sizes
(``--hours``, the episodes of ``bench/make_episode.py`` listed again and again, as
``archive_throughput`` does), on the local engine (``--workers 2``) and on the Ray engine
joining a one-machine cluster started once before (``ray start --head``, then one untimed
job; with ``--own-cluster`` also the job starting its own cluster), rounds interleaved, and
fits per engine the line ``wall = fixed_s + video_h * per_hour_s`` (least squares over every
run). It prints JSON:

- ``runs``: per engine and size, the median wall time, real-time factor and spread, and every
  run's wall time (``walls_s``);
- ``model``: per engine ``fixed_s`` and ``per_hour_s`` (with the marginal real-time factor
  ``3600 / per_hour_s``), and per Ray engine ``marginal_ratio`` (local's per-hour cost over
  Ray's: 1.0 means Ray costs nothing more per hour of video) and ``within_15pct_hours``: the
  catalogue sizes where Ray's wall time is within 15 % of local's (local / Ray >= 0.85) by
  the fitted lines, ``from`` and ``to`` hours (``to`` null: any bigger one; the whole entry
  null: none);
- with ``--cpu``, ``cpu_s``: one more (untimed) run per engine over the largest catalogue,
  every process on the machine polled every 0.1 s, the CPU seconds each used during the run,
  grouped: the ``tvindex`` process (``driver``), its forked decode workers (local), Ray's
  task workers (the decode tasks; ``ray::IDLE`` between tasks), the tagging actor, and Ray's
  daemons and cluster-wide helper actors; a process that ends between two polls loses its
  last 0.1 s, so this is an account, not a stopwatch;
- the load average before and after.

    python bench/ray_overhead.py --student-onnx var/models/student.int8.onnx --hours 0.5 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

# The bench folder is on the path (above).
import archive_throughput as at


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line through (hours, seconds): (fixed seconds, seconds per hour)."""
    slope, intercept = statistics.linear_regression([h for h, _ in points],
                                                    [s for _, s in points])
    return intercept, slope


def break_even(local: tuple[float, float], ray: tuple[float, float],
               ratio: float = 0.85) -> tuple[float, float | None] | None:
    """The catalogue sizes (hours, from, to; to None: no end) where local / Ray >= ``ratio``
    by the fitted lines; None when there are none."""
    (fl, ml), (fr, mr) = local, ray
    # fl + ml h >= ratio (fr + mr h)  <=>  h (ml - ratio mr) >= ratio fr - fl
    a, b = ml - ratio * mr, ratio * fr - fl
    if a > 0:
        return max(0.0, b / a), None
    if a == 0:
        return (0.0, None) if b <= 0 else None
    return (0.0, b / a) if b <= 0 else None  # Ray's hour costs more: only small jobs


def _group(proc_name: str, cmdline: str, pid: int, driver: int, ppid: int,
           new: bool) -> str | None:
    """Which part of the run a process is (None: neither the run's nor Ray's). ``new``: the
    process started during the run."""
    title = f"{proc_name} {cmdline}"  # Linux keeps 15 characters of a process's name
    if pid == driver:
        return "driver"
    if ppid == driver:
        return "local decode workers"
    if "ray::IDLE" in title or "ray::MapBatches" in title:
        return "ray task workers (decode)"
    if new and (proc_name.startswith("ray::") or "default_worker" in cmdline):
        return "ray tagging actor"  # the job's other Ray worker (the decode tasks': above)
    if proc_name.startswith("ray::") or proc_name in ("raylet", "gcs_server") \
            or "/ray/" in cmdline:
        return "ray daemons and helper actors"
    return None


def cpu_account(manifest_path: Path, env: dict, engine: str) -> dict:
    """CPU seconds per part of one `tvindex index` run (see the module docstring)."""
    import psutil  # a dependency of Ray

    def snap() -> dict:
        out = {}
        for p in psutil.process_iter(["pid", "ppid", "name", "cmdline", "cpu_times",
                                      "create_time"]):
            try:
                i = p.info
                ct = i["cpu_times"]
                out[(i["pid"], i["create_time"])] = (
                    ct.user + ct.system, i["name"] or "", " ".join(i["cmdline"] or []),
                    i["ppid"])
            except (psutil.Error, TypeError, AttributeError):
                continue
        return out

    before = snap()
    data = tempfile.mkdtemp(prefix="ray-overhead-")
    log = Path(data) / "stderr.txt"
    started, t0 = time.time(), time.perf_counter()
    with open(log, "w") as err_file:
        proc = subprocess.Popen(at.index_command(manifest_path, str(Path(data) / "d"), 2,
                                                 engine),
                                env=dict(os.environ, **env), cwd=at.REPO,
                                stdout=subprocess.DEVNULL, stderr=err_file)
        last: dict = {}
        while proc.poll() is None:
            last.update(snap())
            time.sleep(0.1)
    wall = time.perf_counter() - t0
    err = log.read_text()
    subprocess.run(["rm", "-rf", data], check=False)
    if proc.returncode != 0:
        raise SystemExit(f"cpu account, {engine}: exit {proc.returncode}: {err[-1000:]}")
    groups: dict[str, float] = {}
    for key, (cpu, name, cmdline, ppid) in last.items():
        used = cpu - before.get(key, (0.0,))[0]
        g = _group(name, cmdline, key[0], proc.pid, ppid, key[1] >= started - 1)
        if g is not None and used > 0.005:
            groups[g] = groups.get(g, 0.0) + used
    return {"wall_s": round(wall, 2), "total": round(sum(groups.values()), 2),
            **{g: round(v, 2) for g, v in sorted(groups.items(), key=lambda x: -x[1])}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", nargs="+", type=float, default=[0.5, 1.0, 2.0, 4.0])
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds of timed runs (0: with --cpu, only the account)")
    p.add_argument("--tagger", choices=["teachers", "student", "student-onnx"],
                   default="student-onnx")
    p.add_argument("--student", type=Path, help="student checkpoint (--tagger student)")
    p.add_argument("--student-onnx", type=Path, help="student ONNX model")
    p.add_argument("--own-cluster", action="store_true",
                   help="also the Ray engine starting its own cluster for each job")
    p.add_argument("--cpu", action="store_true",
                   help="also one run per engine over the largest catalogue with the CPU "
                        "seconds of every process counted (cpu_s)")
    p.add_argument("--every", type=float, default=10.0, help="sampling.every_s")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--duration", type=float, default=300.0)
    p.add_argument("--dir", type=Path, default=REPO / "var" / "bench" / "archive")
    args = p.parse_args(argv)
    if args.rounds < 1 and not args.cpu:
        p.error("--rounds 0 measures nothing without --cpu")
    if args.rounds and len(set(args.hours)) < 2:
        p.error("--hours needs at least two sizes to tell the fixed cost from the rest")
    if at.ray_running():
        p.error("a Ray cluster is running on this machine: stop it first (ray stop)")
    sets = at.tagger_sets(args)
    if args.tagger not in sets:
        p.error(f"--tagger {args.tagger} needs its model (--student / --student-onnx)")
    env = {"TVINDEX__SAMPLING__EVERY_S": str(args.every),
           "TVINDEX__SAMPLING__MODE": "keyframes", **sets[args.tagger]}

    load_before = os.getloadavg()
    args.dir.mkdir(parents=True, exist_ok=True)
    episodes = at.generate(args.dir, args.episodes, args.duration, 1920, 1080, "superfast")
    catalogues = {}
    for h in sorted(set(args.hours)):
        folder = args.dir / f"hours-{h:g}"
        folder.mkdir(exist_ok=True)
        catalogues[h] = at.manifest(folder, episodes, h)
    engines = ["local"] + ["ray"] * args.own_cluster + ["ray-cluster"]
    walls: dict[str, dict[float, list[float]]] = {e: {h: [] for h in catalogues}
                                                   for e in engines}
    warm = (catalogues[min(catalogues)][0], env)  # an untimed job on each new cluster
    for rnd in range(args.rounds):
        for on_cluster in (False, True):
            with at.ray_cluster(on_cluster, warm):
                for engine in engines:
                    if (engine == "ray-cluster") != on_cluster:
                        continue
                    for h, (path, _video) in catalogues.items():
                        r = at.run_index(path, env, 2, engine)
                        if "error" in r:
                            raise SystemExit(f"{engine} {h} h: {r['error']}")
                        walls[engine][h].append(r["wall_s"])
                        print(f"round {rnd + 1} {engine} {h:g} h: {r['wall_s']:.2f} s",
                              file=sys.stderr)
    cpu: dict = {}
    if args.cpu:
        biggest = catalogues[max(catalogues)][0]
        for engine in engines:
            with at.ray_cluster(engine == "ray-cluster", warm):
                cpu[engine] = cpu_account(biggest, env, engine)
                print(f"cpu {engine}: {cpu[engine]}", file=sys.stderr)
    runs: dict = {}
    model: dict = {}
    for engine, by_h in walls.items() if args.rounds else ():
        runs[engine] = {}
        for h, ws in by_h.items():
            med = statistics.median(ws)
            runs[engine][f"{h:g}h"] = {
                "wall_s": round(med, 2), "x_realtime": round(catalogues[h][1] / med, 1),
                "spread": round((max(ws) - min(ws)) / med, 3), "rounds": len(ws),
                "walls_s": [round(w, 2) for w in ws]}
        fixed, per_h = fit([(catalogues[h][1] / 3600, w) for h, ws in by_h.items()
                            for w in ws])
        model[engine] = {"fixed_s": round(fixed, 2), "per_hour_s": round(per_h, 2),
                         "marginal_x_realtime": round(3600 / per_h, 1)}
    for engine in engines[1:] if args.rounds else ():
        loc = (model["local"]["fixed_s"], model["local"]["per_hour_s"])
        ray = (model[engine]["fixed_s"], model[engine]["per_hour_s"])
        model[engine]["marginal_ratio"] = round(loc[1] / ray[1], 3)
        be = break_even(loc, ray)
        model[engine]["within_15pct_hours"] = None if be is None else {
            "from": round(be[0], 2), "to": None if be[1] is None else round(be[1], 2)}
        for h in catalogues:
            runs[engine][f"{h:g}h"]["vs_local"] = round(
                runs["local"][f"{h:g}h"]["wall_s"] / runs[engine][f"{h:g}h"]["wall_s"], 2)
    out = {"cores": os.cpu_count(), "tagger": args.tagger, "every_s": args.every,
           "hours": sorted(catalogues), "rounds": args.rounds,
           "load_before": [round(x, 2) for x in load_before], "runs": runs, "model": model,
           **({"cpu_s": {"hours": max(catalogues), **cpu}} if cpu else {}),
           "load_after": [round(x, 2) for x in os.getloadavg()],
           "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
