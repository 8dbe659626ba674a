"""Write files all-or-nothing: a reader sees the old file or the new one, never half of one.

Data goes to a temporary file in the target's directory (same file system, so the
final :func:`os.replace` is an atomic rename), is flushed and fsynced, and only then
takes the target's name.  On any exception -- including ``KeyboardInterrupt`` -- the
temporary file is removed and the target is left as it was.  Missing parent folders are
created (the one rule for every file cnnspec writes).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cnnspec.errors import CnnspecError, OutputExistsError


def _make_folder(directory: Path) -> None:
    """Create ``directory`` and its missing parents; a clear error when that is impossible."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CnnspecError(f"cannot create the folder {directory}: a file is in the way") from None
    except OSError as exc:
        raise CnnspecError(f"cannot create the folder {directory}: {exc.strerror or exc}") from None


def _refuse_existing(target: Path, overwrite: bool) -> None:
    if target.is_dir():
        raise OutputExistsError(f"{target} is a directory; name a file to write")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass --force to overwrite it")


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], overwrite: bool = False, suffix: str = ".tmp"
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    Missing parent folders of ``path`` are created first.

    Args:
        path: the file to create or replace.
        overwrite: allow replacing an existing file.
        suffix: the temporary file's ending (for writers that insist on one, e.g. ``.weights.h5``).

    Yields:
        The temporary path to write (it exists, empty, when yielded).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false, or ``path`` is a directory.
        CnnspecError: a missing parent folder cannot be created, or the folder is not writable.
    """
    target = Path(path)
    _refuse_existing(target, overwrite)
    directory = target.parent if str(target.parent) else Path(".")
    _make_folder(directory)
    try:
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=suffix, dir=directory
        )
    except OSError as exc:
        raise CnnspecError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        _fsync(temp)
        existing_mode = _mode_of(target)
        os.chmod(temp, existing_mode if existing_mode is not None else 0o666 & ~_umask())
        if overwrite:
            os.replace(temp, target)
        else:
            _move_without_overwrite(temp, target)
        _fsync_directory(directory)
    except BaseException:  # including KeyboardInterrupt: never leave the temporary file behind
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _move_without_overwrite(temp: Path, target: Path) -> None:
    """Give ``temp`` the name ``target`` unless a file appeared there meanwhile (a hard link is atomic)."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise OutputExistsError(f"{target} exists; pass --force to overwrite it") from None
    except OSError:  # file systems without hard links: check, then rename
        if target.exists():
            raise OutputExistsError(f"{target} exists; pass --force to overwrite it") from None
        os.replace(temp, target)
        return
    temp.unlink()


def atomic_write(
    path: str | os.PathLike[str], data: str | bytes, *, overwrite: bool = False
) -> None:
    """Write ``data`` (text is written as UTF-8) to ``path`` atomically.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_path(path, overwrite=overwrite) as temp:
        with open(temp, "wb") as handle:
            handle.write(payload)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (not possible on every platform; best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mode_of(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


__all__ = ["atomic_path", "atomic_write"]
