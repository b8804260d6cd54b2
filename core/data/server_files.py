"""Reading a data file by its path on the server, for the Data page: only a regular file inside the configured
data folder, never larger than an upload may be, and never the app's own database or secrets.

A browser user names a path that the *server* opens, so every rule here is a security boundary: the path is
resolved (symlinks and ``..``) before it is compared with the data folder, the file is opened without following
a last-moment symlink and checked on the open descriptor (a device such as ``/dev/zero`` never reaches a read),
and the read stops one byte past the limit. The CLI reads any path its user can: it is not bound by these rules.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import SynthloopError

DATA_DIR_ENV = "SYNTHLOOP_DATA_DIR"
SECRETS_FILE = (".streamlit", "secrets.toml")  # Streamlit's secrets file, wherever the app was started
DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal")  # the SQLite file and the files it keeps beside it
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ServerFile:
    name: str  # the file's name, for the format (by extension) and messages
    path: Path  # where it resolved to, inside the data folder
    content: bytes


def configured_data_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """The folder named by ``SYNTHLOOP_DATA_DIR``, or None: reading by server path is then off."""
    value = (os.environ if environ is None else environ).get(DATA_DIR_ENV, "").strip()
    return value or None


def read_server_file(path: str, *, data_dir: str | os.PathLike[str] | None, max_upload_mb: int | float,
                     database: str | os.PathLike[str] | None = None,
                     secrets_files: Iterable[str | os.PathLike[str]] = ()) -> ServerFile:
    """The bytes of ``path`` (absolute, or relative to ``data_dir``), after every check of the module docstring.

    ``max_upload_mb`` is the upload limit in megabytes (Streamlit's ``server.maxUploadSize``); ``database`` is
    the app's database file (it, its -wal, -shm and -journal files are refused); ``secrets_files`` are the
    secrets files the app reads, refused like any ``.streamlit/secrets.toml``.
    """
    if not data_dir:
        raise SynthloopError(f"reading a file by its server path is off: set {DATA_DIR_ENV} to the folder that "
                             "holds the data files and restart the app, or upload the file")
    root = Path(data_dir).expanduser().resolve()
    if not root.is_dir():
        raise SynthloopError(f"the data folder {str(data_dir)!r} ({DATA_DIR_ENV}) is not a folder on the server: "
                             f"create it, or set {DATA_DIR_ENV} to an existing folder")
    given = path.strip()
    if not given:
        raise SynthloopError(f"no path given: name a file inside the data folder {str(root)!r}")
    try:
        target = (root / given).resolve()  # an absolute path replaces root; symlinks and .. are resolved
    except (RuntimeError, OSError):  # a symlink loop
        raise SynthloopError(f"{given!r} cannot be resolved (a loop of symbolic links): check the path") from None
    if not target.is_relative_to(root):
        raise SynthloopError(f"{given!r} is outside the data folder {str(root)!r}: only files inside it can be "
                             f"read; copy the file there ({DATA_DIR_ENV}) or upload it")
    if (target.parent.name, target.name) == SECRETS_FILE:
        raise _secrets(given)
    limit = int(max_upload_mb * 1024 * 1024)
    try:
        before = os.stat(target)
    except OSError as exc:
        raise _unreadable(exc, given, root) from None
    _check_kind(before.st_mode, given)  # before opening: a device or a pipe is never opened
    fd = _open(target, given, root)
    try:
        info = os.fstat(fd)
        _check_kind(info.st_mode, given)  # again on what was opened, in case the path changed in between
        identity = (info.st_dev, info.st_ino)  # also catches a hard link to a protected file
        if identity in _identities(_database_files(database)):
            raise SynthloopError(f"{given!r} is the app's database, which is never read as data: name a data file "
                                 "(the Export page writes the project's data out)")
        if identity in _identities(Path(p) for p in secrets_files):
            raise _secrets(given)
        if info.st_size > limit:
            raise _too_large(given, info.st_size, max_upload_mb)
        content = _read_at_most(fd, limit + 1)
        if len(content) > limit:  # it grew since fstat
            raise _too_large(given, len(content), max_upload_mb)
    finally:
        os.close(fd)
    return ServerFile(name=target.name, path=target, content=content)


def _check_kind(mode: int, given: str) -> None:
    if stat.S_ISDIR(mode):
        raise SynthloopError(f"{given!r} is a folder, not a file: give the path of one file")
    if not stat.S_ISREG(mode):
        raise SynthloopError(f"{given!r} is not a regular file (a device, pipe or socket): give the path of a "
                             "data file")


def _open(target: Path, given: str, root: Path) -> int:
    # O_NOFOLLOW: a symlink swapped in after resolve() is refused; O_NONBLOCK: opening a FIFO never waits.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(target, flags)
    except OSError as exc:
        raise _unreadable(exc, given, root) from None


def _unreadable(exc: OSError, given: str, root: Path) -> SynthloopError:
    if isinstance(exc, FileNotFoundError):
        return SynthloopError(f"file {given!r} not found in the data folder {str(root)!r}: check the path")
    if isinstance(exc, PermissionError):
        return SynthloopError(f"{given!r} cannot be read by the server (permission denied): make it readable by "
                              "the user the app runs as")
    if exc.errno == errno.ELOOP:
        return SynthloopError(f"{given!r} changed into a symbolic link while it was opened: try again")
    return SynthloopError(f"{given!r} cannot be opened ({exc.strerror}): check the path")


def _secrets(given: str) -> SynthloopError:
    return SynthloopError(f"{given!r} is the app's secrets file, which is never read as data: name a data file")


def _too_large(given: str, size: int, max_upload_mb: int | float) -> SynthloopError:
    return SynthloopError(f"{given!r} is {size / 1024 / 1024:.1f} MB, over the upload limit of {max_upload_mb:g} MB: "
                          "raise server.maxUploadSize in .streamlit/config.toml, or import the file with "
                          "`python -m core import`")


def _database_files(database: str | os.PathLike[str] | None) -> list[Path]:
    if not database:
        return []
    base = Path(database)
    return [base.with_name(base.name + suffix) for suffix in DATABASE_SUFFIXES]


def _identities(paths: Iterable[Path]) -> set[tuple[int, int]]:
    found = set()
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:  # absent (no -wal yet, no secrets file): nothing to protect
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def _read_at_most(fd: int, n: int) -> bytes:
    os.set_blocking(fd, True)
    parts, left = [], n
    while left > 0:
        chunk = os.read(fd, min(_CHUNK, left))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
