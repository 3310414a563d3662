"""Server memory under a burst of large picture uploads (issue 14, item 8); prints JSON.

Starts ``tvindex serve --port 0`` over a fresh, empty data dir in a subprocess, sends one
warm-up upload, then ``--uploads`` (32) concurrent uploads of a generated, compressible
36-megapixel PNG (about 100 KB) to ``POST /api/v1/similar``, and samples the server's RSS
(psutil) every 10 ms: before the burst, its peak during it, and after it (once the answers are
in, after ``--settle`` seconds). Each upload is decoded (the part this measures); the empty
catalogue then answers 409 (no embeddings), so no embedding network is loaded.

Target: peak growth under 300 MB, and back within 50 MB of the start after the burst.

    python bench/upload_memory.py [--rounds 3] [--uploads 32] [--megapixels 36]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def make_png(megapixels: float) -> bytes:
    side = int((megapixels * 1e6) ** 0.5)
    im = Image.linear_gradient("L").resize((side, side)).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def upload(port: int, data: bytes) -> int:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/similar", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def one_round(data: bytes, uploads: int, settle: float, decodes: int | None) -> dict:
    with tempfile.TemporaryDirectory() as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TVINDEX__")}
        if decodes is not None:
            env["TVINDEX__SERVER__MAX_CONCURRENT_DECODES"] = str(decodes)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tvindex.cli", "serve", "--port", "0", "--data-dir",
             data_dir], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            match = re.search(r":(\d+)/", line)
            if not match:
                raise RuntimeError(f"tvindex serve did not start: {line!r}")
            port = int(match.group(1))
            server = psutil.Process(proc.pid)
            warm = upload(port, data)  # imports, first allocations
            time.sleep(settle)
            before = server.memory_info().rss
            peak = before
            stop = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, server.memory_info().rss)
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            with ThreadPoolExecutor(uploads) as pool:
                statuses = list(pool.map(lambda _: upload(port, data), range(uploads)))
            elapsed = time.monotonic() - started
            time.sleep(settle)
            stop.set()
            sampler.join()
            after = server.memory_info().rss
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"rss_before_mb": round(before / MB, 1), "rss_peak_mb": round(peak / MB, 1),
            "rss_after_mb": round(after / MB, 1),
            "peak_growth_mb": round((peak - before) / MB, 1),
            "after_minus_before_mb": round((after - before) / MB, 1),
            "burst_s": round(elapsed, 2), "warmup_status": warm,
            "statuses": sorted(set(statuses))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--uploads", type=int, default=32)
    ap.add_argument("--megapixels", type=float, default=36.0)
    ap.add_argument("--decodes", type=int, help="server.max_concurrent_decodes (default: "
                    "the configured one)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before 'after'")
    args = ap.parse_args()
    data = make_png(args.megapixels)
    rounds = [one_round(data, args.uploads, args.settle, args.decodes) for _ in range(args.rounds)]
    median = {k: statistics.median(r[k] for r in rounds)
              for k in ("rss_before_mb", "rss_peak_mb", "rss_after_mb", "peak_growth_mb",
                        "after_minus_before_mb", "burst_s")}
    print(json.dumps({
        "png_bytes": len(data), "max_concurrent_decodes": args.decodes or "configured", "megapixels": args.megapixels, "uploads": args.uploads,
        "median": median,
        "target": {"peak_growth_under_300_mb": median["peak_growth_mb"] < 300,
                   "after_within_50_mb": abs(median["after_minus_before_mb"]) <= 50},
        "load_average": os.getloadavg(), "cpus": os.cpu_count(), "rounds": rounds,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
