"""A pool of decode workers (``indexer.pipeline.decode``), each with a task pipe and a result
pipe of its own, watched together; a worker that dies is reported and replaced.

Workers are forked: the first ones at the start of the run, before any model is loaded, so
they carry no tagger state. A replacement for a dead worker is started the same way.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Self

from indexer.pipeline.decode import worker_main

log = logging.getLogger(__name__)
DIED = "died"  # the message kind for a worker that ended while it had a task


def usable_cpus() -> int:
    """The cores this process may run on (its affinity, else the machine's): the default
    number of decode workers, and the tagging threads of a Ray node's actor."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(eq=False)
class Worker:
    """One decode process: ``tasks`` (main's sending end), ``results`` (main's receiving
    end); ``job``: the id of the task it works on (None: idle)."""

    process: Any
    tasks: Connection
    results: Connection
    job: int | None = None
    alive: bool = field(default=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_reason(self) -> str:
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        if code is None:
            return "decode worker stopped answering"
        if code < 0:
            return f"decode worker killed by signal {-code}"
        return f"decode worker exited with status {code}"


class WorkerPool:
    """``size`` decode workers. :meth:`wait` returns the messages that arrived, and one
    ``(worker, (DIED, job, reason))`` for a worker that ended; :meth:`replace` starts a new
    worker in a dead one's place."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, got {size}")
        self._ctx = mp.get_context("fork")
        self.workers: list[Worker] = []
        try:
            for _ in range(size):
                self.workers.append(self._start())
        except BaseException:
            self.close()
            raise

    def _start(self) -> Worker:
        task_recv, task_send = self._ctx.Pipe(duplex=False)
        result_recv, result_send = self._ctx.Pipe(duplex=False)
        inherited = [fd for w in self.workers if w.alive
                     for fd in (w.tasks.fileno(), w.results.fileno())]
        inherited += [task_send.fileno(), result_recv.fileno()]
        proc = self._ctx.Process(target=worker_main, name="tvindex-decode", daemon=True,
                                 args=(task_recv, result_send, os.getpid(), inherited))
        proc.start()
        task_recv.close()  # the child's ends: only the child may hold them
        result_send.close()
        return Worker(proc, task_send, result_recv)

    def idle(self) -> list[Worker]:
        return [w for w in self.workers if w.alive and w.job is None]

    def busy(self) -> list[Worker]:
        return [w for w in self.workers if w.alive and w.job is not None]

    def submit(self, worker: Worker, job: int, task: tuple) -> None:
        worker.job = job
        try:
            worker.tasks.send((job, *task))
        except OSError:  # it died: the next wait() reports it with this job
            pass

    def wait(self, timeout: float | None = None) -> list[tuple[Worker, tuple]]:
        """Messages from busy workers (any order between workers, in order per worker)."""
        busy = self.busy()
        if not busy:
            return []
        by_conn = {w.results: w for w in busy}
        by_sentinel = {w.process.sentinel: w for w in busy}
        ready = wait(list(by_conn) + list(by_sentinel), timeout)
        out: list[tuple[Worker, tuple]] = []
        dead: list[Worker] = []
        for r in ready:
            if r in by_conn:
                w = by_conn[r]
                try:
                    out.append((w, r.recv()))
                except (EOFError, OSError):
                    dead.append(w)
            else:
                w = by_sentinel[r]
                # Messages it sent before it ended are still in the pipe: take them first.
                if w.results.poll():
                    continue
                dead.append(w)
        for w in dict.fromkeys(dead):
            out.append((w, (DIED, w.job, w.exit_reason())))
            self._bury(w)
        return out

    def _bury(self, worker: Worker) -> None:
        worker.alive = False
        for conn in (worker.tasks, worker.results):
            conn.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=1.0)

    def replace(self, worker: Worker) -> Worker:
        """Start a worker in place of a dead one."""
        new = self._start()
        self.workers[self.workers.index(worker)] = new
        log.warning("a decode worker (pid %s) ended; started pid %s", worker.pid, new.pid)
        return new

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.alive]

    def close(self) -> None:
        """Stop every worker: a polite None, then SIGKILL for those still running."""
        for w in self.workers:
            if w.alive:
                try:
                    w.tasks.send(None)
                except OSError:
                    pass
        for w in self.workers:
            if w.alive:
                w.process.join(timeout=2.0 if w.job is None else 0.1)
                self._bury(w)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
