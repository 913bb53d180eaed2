"""File system primitives the backends share: durable writes, verified copies, sizes.

Durability follows the usual POSIX recipe: data reaches the disk with fsync on the
file, a new or renamed name reaches it with fsync on the directory holding it.
"""
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

CHUNK = 1 << 20  # 1 MiB


def fsync_dir(path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path) -> None:
    # A read-only descriptor is enough: fsync flushes the file, not the descriptor.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: Path) -> None:
    """mkdir -p, fsyncing each parent whose entries changed, so the new directories
    survive a power cut together with what is later written into them."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        fsync_dir(directory.parent)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `path` so that readers see either nothing (or the old file) or all of it:
    a temporary file in the same folder (so rename is atomic), fsync, rename, fsync
    the folder. The temporary name starts with '.' and ends with '.tmp' so that
    folder watchers looking for '*.xml' or tag files never pick it up."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)  # mkstemp makes 0600; other readers need more
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def hash_file(path, algorithm: str = "sha1", drop_cache: bool = False) -> str:
    """Hex digest of a file. drop_cache: drop its clean cached pages first, so the hash
    is of what the disk holds rather than of what was just written into memory."""
    h = hashlib.new(algorithm)
    with open(path, "rb", buffering=0) as f:
        if drop_cache and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        while True:
            block = f.read(CHUNK)
            if not block:
                return h.hexdigest()
            h.update(block)


def copy_file_hashing(source, target, algorithm: str = "sha1") -> str:
    """Copy one regular file (mode and times kept), fsync it, and return the hash of
    the bytes read from `source`. `target` must not exist."""
    h = hashlib.new(algorithm)
    with open(source, "rb", buffering=0) as src:
        st = os.fstat(src.fileno())
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb", buffering=0) as dst:
            while True:
                block = src.read(CHUNK)
                if not block:
                    break
                h.update(block)
                dst.write(block)
            os.fchmod(dst.fileno(), stat.S_IMODE(st.st_mode))
            os.fsync(dst.fileno())
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    return h.hexdigest()


def tree_bytes(path) -> int:
    """Bytes of the regular files below `path` (symlinks are not followed)."""
    total = 0
    stack = [os.fspath(path)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except FileNotFoundError:
            continue  # removed while we walked: it no longer uses space
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    try:
                        total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        pass
    return total


def remove_tree(path: Path) -> None:
    """Remove a directory tree, or a symlink in its place (never following it)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
