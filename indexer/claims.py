"""Episode claims: indexing runs that share a data dir do each episode once.

A run claims an episode before tagging it by taking an exclusive ``flock`` on the episode's
claim file, ``<data_dir>/claims/<hash of the episode id>.claim``, without waiting; a run that
cannot take it leaves the episode to the run that holds it and looks again at the end of its
own work (then waiting for the holder). The operating system drops the lock when its process
ends, however it ends, so the claim of a dead run expires by itself.

The claim file also says what the last holder did with the episode (``tagging``, ``done`` or
``failed``, with the fingerprint, configuration version and time): a run that takes a claim
after another run finished the same episode (same fingerprint and configuration) since this
run started does not do it again.

Claims hold between processes of one machine, or of several machines on one shared POSIX
filesystem whose locks work across clients (``flock`` on local disks; NFSv4 maps it to byte
range locks). Claim files are small and stay after the run (they carry that last word).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Self

CLAIMS_DIR = "claims"


class Claim:
    """An episode held by this run until :meth:`release`. ``previous``: what the claim file
    said when it was taken (None when new or unreadable)."""

    def __init__(self, claims: EpisodeClaims, episode_id: str, fd: int | None,
                 previous: dict[str, Any] | None) -> None:
        self.claims = claims
        self.episode_id = episode_id
        self.fd = fd
        self.previous = previous

    def finished_elsewhere(self, fingerprint: str, version: str, since: float) -> bool:
        """Another run tagged (or failed) this episode, with this fingerprint and
        configuration version, at or after ``since`` (a ``time.time()``)."""
        p = self.previous
        return bool(p and p.get("run") != self.claims.run_id
                    and p.get("state") in ("done", "failed")
                    and p.get("fingerprint") == fingerprint
                    and p.get("config_version") == version
                    and isinstance(p.get("at"), (int, float)) and p["at"] >= since)

    def note(self, state: str, **fields: Any) -> None:
        """Record what this run did with the episode (for the runs that take it later)."""
        if self.fd is None:
            return
        data = json.dumps({"run": self.claims.run_id, "state": state, "at": time.time(),
                           **fields}).encode()
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
        except OSError:  # a full disk: the claim still holds; only the note is lost
            pass

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class EpisodeClaims:
    """The claims of one data dir (``<data_dir>/claims``); ``run_id`` names this run."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)  # made on the first claim
        self.run_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str]) -> EpisodeClaims:
        return cls(Path(data_dir) / CLAIMS_DIR)

    def path(self, episode_id: str) -> Path:
        return self.directory / f"{hashlib.sha256(episode_id.encode()).hexdigest()[:40]}.claim"

    def claim(self, episode_id: str, *, wait: bool = False) -> Claim | None:
        """Take the episode's claim: None when another run holds it (``wait``: block until
        it is released instead)."""
        path = self.path(episode_id)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        except BaseException:
            os.close(fd)
            raise
        claim = Claim(self, episode_id, fd, _read_note(fd))
        claim.note("tagging", pid=os.getpid())
        return claim


class NoClaims:
    """A run alone on its data dir: every claim is granted at once and records nothing."""

    run_id = "alone"

    def claim(self, episode_id: str, *, wait: bool = False) -> Claim:
        return Claim(self, episode_id, None, None)  # type: ignore[arg-type]


def _read_note(fd: int) -> dict[str, Any] | None:
    try:
        data = os.pread(fd, 1 << 16, 0)
        note = json.loads(data) if data else None
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None
