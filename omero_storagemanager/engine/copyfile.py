"""Copying one file so that the copy can be trusted: the primitive of archive and restore.

    read the source once, hashing while writing a temporary file next to the target
    -> fsync the temporary file
    -> check the source did not change meanwhile, and that its hash is what OMERO recorded
    -> drop the copy from the page cache and read it back from the disk, hashing again
    -> only then rename it to its final name.

So a file under its final name has always been verified, and a crash at any instant
leaves at most a temporary file (suffix TMP_SUFFIX) that the next run removes.
"""
import errno
import hashlib
import os
from dataclasses import dataclass

from .hashing import new_hasher, open_noatime, read_buffer

TMP_SUFFIX = ".sm-partial"
MANIFEST_ALGORITHM = "SHA1-160"  # bags list SHA1; OMERO's default, so one hash serves both


class CopyError(Exception):
    """A copy could not be made or trusted; the message says which file and why."""


class PrimaryDamaged(CopyError):
    """The source does not match OMERO's checksum: never archive it silently."""


class SourceChanged(CopyError):
    """The source changed while it was being copied."""


class CopyCorrupt(CopyError):
    """What was read back from the target differs from what was written."""


@dataclass
class CopyResult:
    sha1: str
    size: int
    mode: int


def _read_into_hashers(f, hashers, sink=None):
    size = 0
    buf, view = read_buffer()  # per thread; a sink must not keep the chunk
    while True:
        n = f.readinto(buf)
        if not n:
            return size
        chunk = view[:n]
        for h in hashers:
            h.update(chunk)
        if sink is not None:
            sink(chunk)
        size += n


def _writer(f, name):
    """f.write until all of the chunk is written: an unbuffered write may write less
    (a disk filling up), and the next call then reports why (ENOSPC)."""
    def write(chunk):
        while chunk:
            n = f.write(chunk)
            if not n:
                raise OSError(errno.EIO, "the disk accepted no more bytes", name)
            chunk = chunk[n:]
    return write


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_back_sha1(path):
    """SHA1 of a file as the disk holds it (its cached pages are dropped first)."""
    with open(path, "rb", buffering=0) as f:
        fd = f.fileno()
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        h = hashlib.sha1()
        _read_into_hashers(f, [h])
        return h.hexdigest()


def copy_verified(source, target, expected=None, expected_algorithm=None, mode=None,
                  fsync_dir=True, make_dirs=True):
    """Copy `source` to `target` verified; returns CopyResult(sha1, size, mode).

    expected / expected_algorithm: the checksum OMERO (or a bag manifest) recorded for
    the source, checked on the same read pass. mode: permission bits for the target
    (default: the source's). Raises a CopyError subclass and leaves no target behind
    when anything is wrong; never touches `source`. make_dirs=False: the target's
    folder must exist already (archive: never re-create an unmounted location's tree).
    """
    source, target = os.fspath(source), os.fspath(target)
    tmp = target + TMP_SUFFIX
    if make_dirs:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.lexists(tmp):
        os.unlink(tmp)  # left by a run that was killed: never trusted
    hashers = [hashlib.sha1()]
    if expected and expected_algorithm and expected_algorithm != MANIFEST_ALGORITHM:
        hashers.append(new_hasher(expected_algorithm))
    try:
        with open_noatime(source) as src:
            before = os.fstat(src.fileno())
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb", buffering=0) as dst:
                size = _read_into_hashers(src, hashers, _writer(dst, tmp))
                dst.flush()
                os.fsync(dst.fileno())
            after = os.fstat(src.fileno())
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) \
                or size != after.st_size:
            raise SourceChanged(f"{source} changed while it was being copied")
        sha1 = hashers[0].hexdigest()
        if expected:
            got = hashers[-1].hexdigest()
            if got.lower() != expected.lower():
                raise PrimaryDamaged(
                    f"{source} does not match its recorded checksum "
                    f"({expected_algorithm or MANIFEST_ALGORITHM} {expected}, read {got})")
        back = read_back_sha1(tmp)
        if back != sha1:
            raise CopyCorrupt(f"{target}: read back {back}, wrote {sha1}")
        mode = before.st_mode & 0o7777 if mode is None else mode
        os.chmod(tmp, mode)
        os.rename(tmp, target)
        if fsync_dir:
            _fsync_dir(os.path.dirname(target))
        return CopyResult(sha1, size, mode)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def fsync_dirs(paths):
    """fsync each directory once (callers that copy many files batch this)."""
    for path in sorted(set(paths)):
        _fsync_dir(path)
