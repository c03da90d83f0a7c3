"""Files that must never be seen half-written, the lock of a live run, and checkpoint reading.

Every file or folder the plugin writes (checkpoints, adapters, run records, converted datasets,
the dequantized LLM) goes through :func:`atomic_write` / :func:`atomic_write_dir`: it is written
under a temporary name in the same folder and renamed into place, so an interrupted run leaves the
last good version, never a torn one. Rebuilding a model from a checkpoint is
:mod:`recbole_collm.restore`'s.
"""
from __future__ import annotations

import fcntl
import os
import pickle
import shutil
from typing import Any, Callable

import torch

from recbole_collm.errors import InputError, MissingInputError, first_line


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it onto ``path``."""
    path = str(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_dir(path: str | os.PathLike, write: Callable[[str], None], replace: bool = True) -> None:
    """``write(folder)`` into a temporary folder beside ``path``, then swap it in. With
    ``replace=False`` an existing ``path`` wins (another process finished first) and is kept."""
    path = str(path)
    tmp, old = f"{path}.tmp{os.getpid()}", f"{path}.old{os.getpid()}"
    try:
        write(tmp)
        if os.path.exists(path):
            if not replace:
                return
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


class RunLock:
    """Held by a live run over its checkpoint files (``<stem>.pth``, ``<stem>-last.pth``): an
    ``flock`` on ``<checkpoint_dir>/.locks/<stem>.lock``, released when the run ends or its process
    dies (SIGKILL included), so ``resume: auto`` never takes over a run that is still writing."""

    def __init__(self, checkpoint_file: str | os.PathLike):
        self.checkpoint_file = str(checkpoint_file)
        self.path = lock_path(checkpoint_file)
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._fd = _try_lock(self.path)
        if self._fd is None:
            raise InputError(f"resume: the run writing {self.checkpoint_file} is still going; wait for it or resume another")
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def lock_path(checkpoint_file: str | os.PathLike) -> str:
    """The lock of the run that writes ``checkpoint_file`` (its best or its ``-last`` file)."""
    folder, name = os.path.split(str(checkpoint_file))
    stem = os.path.splitext(name)[0]
    stem = stem[: -len("-last")] if stem.endswith("-last") else stem
    return os.path.join(folder, ".locks", f"{stem}.lock")


def run_is_live(checkpoint_file: str | os.PathLike) -> bool:
    """Whether a running process holds the lock of the run that writes ``checkpoint_file``."""
    path = lock_path(checkpoint_file)
    if not os.path.exists(path):
        return False
    fd = _try_lock(path)
    if fd is None:
        return True
    os.close(fd)
    return False


def _try_lock(path: str) -> int | None:
    """An open descriptor of ``path`` holding its exclusive ``flock``, or None when another open
    file holds it (a live run)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def save_checkpoint(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp, pickle_protocol=4))


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """A RecBole checkpoint, which pickles the Config and so needs full unpickling.

    torch >= 2.6 defaults to ``weights_only=True``. Only call this on files the user named or
    that this process wrote itself: unpickling runs code from the file.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise MissingInputError(f"checkpoint file '{path}' does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as err:
        raise InputError(f"checkpoint file '{path}' cannot be read (truncated, empty or not a .pth: {first_line(err)})") from None
    return checkpoint
