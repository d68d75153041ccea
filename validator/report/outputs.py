"""The output folder: checked before any work, filled in a staging folder, swapped into place at the end.

Why: a crash, a Ctrl-C or a full disk half-way must never leave a half-written report that looks
complete, and re-using an ``--out`` folder must not mix this run's files with an earlier run's (stale
predictions of a model no longer validated). So every file goes to a hidden sibling staging folder, and
only when all are written does the staging folder replace the target (the old one is moved aside first
and deleted after). A folder is only ever replaced when it is ours: empty, or holding the ``.qharness``
marker every run writes; a folder holding anything else is refused before any inference (exit 2), so a
typo such as ``--out .`` cannot delete a user's files.

Default folders (``reports/<timestamp>``) are reserved with an atomic ``mkdir``, so two runs started in
the same second get ``...`` and ``...-2``. Two runs given the same ``--out`` would both finish and one's
results would silently replace the other's: the folder is locked (``flock`` on a hidden
``.<name>.qharness-lock`` beside it) from the check to the swap, and the second run exits 2 naming the
holder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from validator import __version__
from validator.errors import InputError

MARKER = ".qharness"


def reserve_default(base: Path) -> Path:
    """Create and return ``base`` or the first free ``base-N``; the folder is created atomically (mkdir)."""
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{base.parent}: cannot create the default output folder there "
                         f"({e.strerror or e}); give --out") from None
    i = 1
    while True:
        candidate = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            candidate.mkdir()
        except FileExistsError:
            i += 1
            continue
        except OSError as e:
            raise InputError(f"{candidate}: cannot create the default output folder ({e.strerror or e}); "
                             "give --out") from None
        (candidate / MARKER).write_text(f"qharness {__version__} output folder (reserved)\n")
        return candidate


def _is_ours(folder: Path) -> bool:
    entries = list(folder.iterdir())
    return not entries or (folder / MARKER).is_file()


def _writable_dir(d: Path, what: str) -> None:
    """``d`` exists or can be created, and a file can be written in it."""
    probe_dir = d
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise InputError(f"{d}: {what} cannot be created: {probe_dir} is a file")
    try:
        fd, name = tempfile.mkstemp(prefix=".qharness-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise InputError(f"{d}: {what} is not writable ({e.strerror or e})") from None


def check_cache_dir(d: Path) -> None:
    if d.exists() and not d.is_dir():
        raise InputError(f"{d}: --cache-dir is an existing file, not a folder")
    _writable_dir(d, "cache folder")


class FolderLock:
    """An exclusive, non-blocking lock on an output folder, held by this process until ``release()``."""

    def __init__(self, target: Path):
        self.path = target.with_name(f".{target.name}.qharness-lock")
        self.fd: int | None = None

    def acquire(self, what: str) -> None:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): two runs into one folder are not detected there
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise InputError(f"{self.path.parent}: cannot create the lock file for {what} "
                                 f"({e.strerror or e})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise InputError(f"{self.path.with_name(self.path.name[1:-len('.qharness-lock')])}: {what} is being "
                                 f"written by another run ({holder}); wait for it or give another --out") from None
            try:  # the holder before us may have removed the file after we opened it: lock the one on disk
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = None


class OutputDir:
    """``out = OutputDir(path); out.check(); out.write("summary.json", text); out.commit()``."""

    def __init__(self, target: Path):
        self.target = Path(target).resolve()  # `--out .` must have a name and a parent to swap with
        self.staging: Path | None = None
        self.lock = FolderLock(self.target)

    def check(self) -> None:
        """Before any work: the target is a folder we may replace, and its parent is writable."""
        t = self.target
        if t.exists() and not t.is_dir():
            raise InputError(f"{t}: --out is an existing file, not a folder")
        if t.is_dir() and not _is_ours(t):
            raise InputError(f"{t}: --out folder exists and holds files validate did not write; "
                             "give a new or empty folder")
        _writable_dir(t.parent if not t.exists() else t, "output folder")
        if t.exists():
            _writable_dir(t.parent, "output folder's parent (needed to replace it atomically)")
        t.parent.mkdir(parents=True, exist_ok=True)
        self.lock.acquire("the output folder")

    def _stage(self) -> Path:
        if self.staging is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.staging-", dir=self.target.parent))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.staging, 0o777 & ~umask)  # mkdtemp makes it 0700; a report folder follows the umask
            (self.staging / MARKER).write_text(f"qharness {__version__} output folder\n")
        return self.staging

    def path(self, rel: str) -> Path:
        """Where ``rel`` goes in the staging folder (for files written as a stream)."""
        p = self._stage() / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write(self, rel: str, text: str) -> Path:
        p = self._stage() / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        return p

    def commit(self) -> Path:
        """Swap the staging folder into place; the earlier folder (ours) is removed only afterwards."""
        staging = self._stage()
        t = self.target
        old = None
        if t.exists():
            old = t.with_name(f".{t.name}.old-{os.getpid()}-{time.time_ns()}")
            os.rename(t, old)
        try:
            os.rename(staging, t)
        except OSError:
            if old is not None:
                os.rename(old, t)
            raise
        self.staging = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.lock.release()
        return t

    def abort(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        self.lock.release()
