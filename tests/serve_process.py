"""A real ``tvindex serve`` in a child process on 127.0.0.1 (port 0), for tests over raw HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_serve(data_dir: Path, **env: str) -> tuple[subprocess.Popen, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TVINDEX__")}
    environ.update({f"TVINDEX__SERVER__{k.upper()}": v for k, v in env.items()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvindex.cli", "serve", "--port", "0", "--host", "127.0.0.1",
         "--data-dir", str(data_dir)], cwd=ROOT, env=environ, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        proc.kill()
        err = proc.communicate(timeout=10)[1]
        raise AssertionError(f"tvindex serve did not start: {line!r} {err[-2000:]}")
    return proc, int(match.group(1))


def stop_serve(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def servers(data_dir: Path) -> Iterator[Callable[..., int]]:
    """For a fixture to ``yield from``: ``start(**server_settings) -> port`` starts a server
    over ``data_dir``; at the end every server is stopped and none may have logged a
    traceback."""
    procs: list[subprocess.Popen] = []

    def start(**env: str) -> int:
        proc, port = start_serve(data_dir, **env)
        procs.append(proc)
        return port

    yield start
    for proc in procs:
        err = stop_serve(proc)
        assert "Traceback" not in err, err
