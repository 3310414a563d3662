"""Load on the JSON search API: `tvindex serve` on loopback, N concurrent clients, a mix of
queries, for a fixed time. Prints JSON: requests/s, latency percentiles, errors.

    python bench/api_load.py                      # index the demo catalogue into a temp dir
    python bench/api_load.py --data-dir /tmp/webdemo --clients 16 --duration 20

Each client is a thread with one keep-alive connection (http.client) that sends the next
query as soon as the previous answer is read, so latency includes the server's queueing. The
same run first measures one client alone for a few seconds: the baseline the concurrent
latencies are compared with. Only 127.0.0.1 is ever contacted; every loop ends by time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode, urlsplit

REPO = Path(__file__).resolve().parent.parent
# (query, level, limit, offset): the editors' mix on the demo catalogue.
QUERIES = [
    ("object:bicycle", "shot", 20, 0),
    ("object:person", "programme", 10, 0),
    ("object:person", "shot", 10, 10),
    ("object:car -object:person", "shot", 20, 0),
    ("scene:cab OR object:car", "episode", 20, 0),
    ("object:person after:2020-01-01 before:2022-12-31", "episode", 20, 0),
    ('programme:"La plaça" object:person', "shot", 20, 0),
    ("bicycle", "shot", 20, 0),
    ("genre:nature", "episode", 20, 0),
    ("object:person scene:jinrikisha", "shot", 5, 0),
]
MAX_REQUESTS_PER_CLIENT = 1_000_000  # a bound besides time


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = min(len(sorted_ms) - 1, max(0, round(q / 100 * (len(sorted_ms) - 1))))
    return round(sorted_ms[k], 2)


def index_demo(data_dir: Path) -> None:
    print(f"api_load: indexing the demo catalogue into {data_dir} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "tvindex.cli", "--config",
                    str(REPO / "demo" / "config.yaml"), "index",
                    str(REPO / "demo" / "catalogue.csv"), "--data-dir", str(data_dir),
                    "--no-progress"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def start_server(data_dir: Path, threads: int, log) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvindex.cli", "--config", str(REPO / "demo" / "config.yaml"),
         "serve", "--host", "127.0.0.1", "--port", "0", "--threads", str(threads),
         "--data-dir", str(data_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True,
        # Every client is 127.0.0.1: the per-address rate limit would measure itself.
        env={**os.environ, "TVINDEX__SERVER__RATE_LIMIT_PER_MINUTE": "0"})
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("tvindex: serving http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"api_load: tvindex serve did not start: {line!r}")
    url = line.split()[2].rstrip("/")
    for _ in range(150):
        try:
            with urllib.request.urlopen(url + "/api/v1/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("api_load: the server never answered /api/v1/health")


def paths() -> list[str]:
    return ["/api/v1/search?" + urlencode({"q": q, "level": lv, "limit": n, "offset": o})
            for q, lv, n, o in QUERIES]


def drive(url: str, clients: int, duration_s: float) -> dict:
    """``clients`` threads hammering the search endpoint for ``duration_s`` seconds."""
    u = urlsplit(url)
    assert u.hostname == "127.0.0.1", "loopback only"
    targets = paths()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[list[str]] = [[] for _ in range(clients)]
    start_gate = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        start_gate.wait()
        n = i  # clients start at different queries of the mix
        while time.perf_counter() < deadline[0] and n - i < MAX_REQUESTS_PER_CLIENT:
            path = targets[n % len(targets)]
            n += 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200 and body.startswith(b"{")
            except (OSError, http.client.HTTPException) as exc:
                ok, body = False, repr(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            latencies[i].append((time.perf_counter() - t0) * 1000)
            if not ok:
                errors[i].append(f"{path}: {body[:120]!r}")
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + duration_s
    t_start = time.perf_counter()
    start_gate.wait()
    for t in threads:
        t.join(duration_s + 60)
    elapsed = time.perf_counter() - t_start
    all_ms = sorted(x for lat in latencies for x in lat)
    all_errors = [e for errs in errors for e in errs]
    return {
        "clients": clients, "duration_s": round(elapsed, 2), "requests": len(all_ms),
        "requests_per_s": round(len(all_ms) / elapsed, 1),
        "latency_ms": {"p50": percentile(all_ms, 50), "p90": percentile(all_ms, 90),
                       "p99": percentile(all_ms, 99),
                       "max": round(all_ms[-1], 2) if all_ms else None,
                       "mean": round(sum(all_ms) / len(all_ms), 2) if all_ms else None},
        "errors": len(all_errors), "error_samples": all_errors[:5],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, help="an indexed catalogue (default: index the "
                    "demo catalogue into a temporary directory)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    ap.add_argument("--baseline", type=float, default=3.0,
                    help="seconds of one client alone, first")
    ap.add_argument("--threads", type=int, default=4, help="server threads (server.threads)")
    args = ap.parse_args(argv)
    if not 1 <= args.clients <= 256 or not 0 < args.duration <= 600:
        ap.error("--clients must be 1..256 and --duration 0..600 s")

    with tempfile.TemporaryDirectory(prefix="tvindex-api-load-") as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = Path(tmp) / "data"
            index_demo(data_dir)
        with open(Path(tmp) / "serve.log", "w+") as log:
            proc, url = start_server(data_dir, args.threads, log)
            try:
                with urllib.request.urlopen(url + "/api/v1/health", timeout=5) as resp:
                    health = json.load(resp)
                drive(url, 2, 1.0)  # warm caches and connections
                baseline = drive(url, 1, args.baseline)
                loaded = drive(url, args.clients, args.duration)
            finally:
                proc.terminate()
                proc.wait(10)
    ratio = (loaded["latency_ms"]["p50"] / baseline["latency_ms"]["p50"]
             if baseline["latency_ms"]["p50"] else None)
    report = {
        "benchmark": "api_load", "endpoint": "/api/v1/search", "server_threads": args.threads,
        "catalogue": {"programmes": health["programmes"], "episodes": health["episodes"]},
        "queries": [{"q": q, "level": lv, "limit": n, "offset": o} for q, lv, n, o in QUERIES],
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "baseline_one_client": {k: baseline[k] for k in ("requests_per_s", "latency_ms",
                                                         "errors")},
        **loaded,
        "p50_vs_one_client": round(ratio, 2) if ratio else None,
        "target": {"p99_ms_below": 100, "errors": 0,
                   "met": loaded["latency_ms"]["p99"] < 100 and loaded["errors"] == 0},
    }
    print(json.dumps(report, indent=1))
    return 0 if report["target"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
