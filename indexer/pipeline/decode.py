"""The decode worker: a process that samples episodes and hands their frames over in chunks.

One task at a time arrives on the worker's task pipe: an episode's file, its probe (the main
process probed it once), its time range, the :class:`~indexer.media.Sampler` and the chunk
size (the tagging batch size). The worker samples the episode and sends its frames back on
its own result pipe in chunks of that many frames, in time order, then ``done``; a file that
cannot be read is ``error`` with the MediaError. A pipe holds one message in flight, so a
worker runs at most one chunk ahead of the tagger (backpressure: memory is bounded by the
number of workers x one chunk, whatever the episode's length).

Each worker has pipes of its own: a worker killed mid-message damages only its own stream,
which the main process sees as the end of that pipe (``EOFError``).
"""

from __future__ import annotations

import os
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from indexer.media import Frame, MediaError, MediaInfo, Sampler

# Messages worker -> main: (kind, job id, payload).
FRAMES, DONE, ERROR, CRASH = "frames", "done", "error", "crash"
PARENT_POLL_S = 1.0  # how often an idle worker checks that its parent is alive


def decode_task(path: Path, info: MediaInfo, start_s: float, end_s: float | None,
                sampler: Sampler, chunk: int):
    """The chunks of one episode's frames (lists of at most ``chunk`` Frames, in order)."""
    buf: list[Frame] = []
    for frame in sampler.frames(path, info, start_s, end_s):
        buf.append(frame)
        if len(buf) == chunk:
            yield buf
            buf = []
    if buf:
        yield buf


def worker_main(tasks: Connection, results: Connection, parent_pid: int,
                close_fds: list[int]) -> None:
    """The worker's loop, until the task pipe says None, ends, or the parent is gone.

    ``close_fds``: the main process's ends of the other workers' pipes, inherited by the
    fork; closed so that a worker never keeps another one's pipe open after the main process
    died."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        if not tasks.poll(PARENT_POLL_S):
            if os.getppid() != parent_pid:
                return
            continue
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        job_id, path, info, start_s, end_s, sampler, chunk = task
        try:
            _run_task(results, job_id, path, info, start_s, end_s, sampler, chunk)
        except (BrokenPipeError, EOFError, ConnectionResetError):
            return  # the main process is gone


def _run_task(results: Connection, job_id: int, path: Path, info: MediaInfo, start_s: float,
              end_s: float | None, sampler: Sampler, chunk: int) -> None:
    try:
        for frames in decode_task(path, info, start_s, end_s, sampler, chunk):
            results.send((FRAMES, job_id, frames))
    except MediaError as exc:
        results.send((ERROR, job_id, exc))
        return
    except (BrokenPipeError, ConnectionResetError):
        raise
    except Exception as exc:  # noqa: BLE001 - handed to the main process, which raises it
        results.send((CRASH, job_id, _portable(exc)))
        return
    results.send((DONE, job_id, None))


def _portable(exc: Exception) -> Any:
    """The exception itself when it pickles, else a RuntimeError with its text."""
    import pickle

    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")
