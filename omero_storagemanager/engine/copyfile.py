"""Copying one file so that the copy can be trusted: the primitive of archive and restore.

    read the source once, hashing while writing a temporary file next to the target
    -> make the temporary file durable (fsync; or, for a batch of small files, one
       syncfs of the target's filesystem for all of them: see batchcopy.py)
    -> check the source did not change meanwhile, and that its hash is what OMERO recorded
    -> drop the copy from the page cache and read it back from the disk, hashing again
    -> only then rename it to its final name.

So a file under its final name has always been verified, and a crash at any instant
leaves at most a temporary file (suffix TMP_SUFFIX) that the next run removes.
write_copy and seal_copy are the two halves (before and after durability);
copy_verified is both, with an fsync between them. A large file that must be durable at
once goes through streamcopy.py, which does the same steps window by window (its
read-back is done by the time write_copy returns; seal_copy only compares).
"""
import ctypes
import errno
import hashlib
import os
import platform
from dataclasses import dataclass

from . import streamcopy
from .hashing import new_hasher, open_noatime_fd, read_buffer

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


@dataclass
class PendingCopy:
    """A copy written under its temporary name, checked against its source, not yet
    read back nor renamed. durable: fsynced already (else a batch flush must come
    before seal_copy). device: the target filesystem's, for that flush."""
    target: str
    tmp: str
    sha1: str
    size: int
    mode: int
    device: int
    durable: bool
    reread: bool = False  # dropped from the page cache and asked from the disk again
    back_sha1: str = None  # read back from the disk already, as it was written (streamcopy)


def _read_into_hashers(fd, hashers, sink=None):
    size = 0
    buf, view = read_buffer()  # per thread; a sink must not keep the chunk
    bufs, readv = [buf], os.readv
    while True:
        n = readv(fd, bufs)
        if not n:
            return size
        chunk = view[:n]
        for h in hashers:
            h.update(chunk)
        if sink is not None:
            sink(chunk)
        size += n


def _writer(fd, name):
    """os.write until all of the chunk is written: a write may write less (a disk
    filling up), and the next call then reports why (ENOSPC)."""
    def write(chunk):
        while chunk:
            n = os.write(fd, chunk)
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


def read_back_sha1(path, drop=True):
    """SHA1 of a file as the disk holds it (its cached pages are dropped first, unless
    the caller did that already: reread_from_disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if drop and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        h = hashlib.sha1()
        _read_into_hashers(fd, [h])
        return h.hexdigest()
    finally:
        os.close(fd)


def _unlink_quietly(path):
    """Clean-up after a failure: best effort. A temporary name is never taken for a
    copy and the next run removes it, so a clean-up that fails too (the location went
    read-only, or away) must not hide the error that made us clean up."""
    try:
        os.unlink(path)
    except OSError:
        pass


def write_copy(source, target, expected=None, expected_algorithm=None, mode=None,
               make_dirs=True, durable=True):
    """First half of a verified copy: `source` written to `target`+TMP_SUFFIX, hashed
    on the way and checked (unchanged while read, OMERO's checksum); fsynced unless
    durable=False. Returns a PendingCopy; raises a CopyError subclass or OSError and
    leaves no temporary file when anything is wrong. Never touches `source`.

    expected / expected_algorithm: the checksum OMERO (or a bag manifest) recorded for
    the source. mode: permission bits for the target (default: the source's).
    make_dirs=False: the target's folder must exist already (archive: never re-create
    an unmounted location's tree)."""
    source, target = os.fspath(source), os.fspath(target)
    tmp = target + TMP_SUFFIX
    if make_dirs:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    hashers = [hashlib.sha1()]
    if expected and expected_algorithm and expected_algorithm != MANIFEST_ALGORITHM:
        hashers.append(new_hasher(expected_algorithm))
    src = open_noatime_fd(source)
    try:
        before = os.fstat(src)
        # A large file that must be durable now goes through streamcopy's pipeline,
        # which also reads it back; it needs the temporary file readable.
        streamed = durable and streamcopy.AVAILABLE and before.st_size >= streamcopy.WINDOW
        flags = (os.O_RDWR if streamed else os.O_WRONLY) | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:  # left by a run that was killed: never trusted
            os.unlink(tmp)
            fd = os.open(tmp, flags, 0o600)
        back_sha1 = None
        try:
            if streamed:
                sink = streamcopy.StreamedWriter(fd, tmp, _writer(fd, tmp), hashlib.sha1(),
                                                 src)
                size = _read_into_hashers(src, hashers, sink)
                back_sha1 = sink.finish()
            else:
                size = _read_into_hashers(src, hashers, _writer(fd, tmp))
                if durable:
                    os.fsync(fd)
            device = os.fstat(fd).st_dev
        finally:
            os.close(fd)
        after = os.fstat(src)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    finally:
        os.close(src)
    try:
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
    except BaseException:
        _unlink_quietly(tmp)
        raise
    mode = before.st_mode & 0o7777 if mode is None else mode
    return PendingCopy(target, tmp, sha1, size, mode, device, durable,
                       reread=back_sha1 is not None, back_sha1=back_sha1)


def seal_copy(pending, fsync_dir=False):
    """Second half, once the temporary file is durable: read it back from the disk,
    compare, give it its mode and its final name. Returns a CopyResult."""
    try:
        back = pending.back_sha1 or read_back_sha1(pending.tmp, drop=not pending.reread)
        if back != pending.sha1:
            raise CopyCorrupt(f"{pending.target}: read back {back}, wrote {pending.sha1}")
        os.chmod(pending.tmp, pending.mode)
        os.rename(pending.tmp, pending.target)
    except BaseException:
        _unlink_quietly(pending.tmp)
        raise
    if fsync_dir:
        _fsync_dir(os.path.dirname(pending.target))
    return CopyResult(pending.sha1, pending.size, pending.mode)


def prefetch(path):
    """Ask the kernel to start reading a file into the page cache, without waiting:
    many small cold files read one after another wait on the disk one by one; asked
    ahead, their reads queue up together (about twice the files/s on the test VM)."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = open_noatime_fd(path)
    except OSError:
        return  # the copy itself will say what is wrong
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)


def reread_from_disk(pending):
    """Once durable: drop the copy's cached pages and start reading it back from the
    disk, so that seal_copy's read-back (which then skips its own drop) finds the
    disk's bytes, asked ahead of time."""
    if not (pending.durable and hasattr(os, "posix_fadvise")) or pending.back_sha1:
        return  # streamed copies were read back already
    try:
        fd = os.open(pending.tmp, os.O_RDONLY)
    except OSError:
        return  # seal_copy will fail on it and say why
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        pending.reread = True
    finally:
        os.close(fd)


def discard_copy(pending):
    """Remove a pending copy's temporary file (a batch that is given up)."""
    _unlink_quietly(pending.tmp)


def copy_verified(source, target, expected=None, expected_algorithm=None, mode=None,
                  fsync_dir=True, make_dirs=True):
    """Copy `source` to `target` verified, with an fsync of its own; returns
    CopyResult(sha1, size, mode). See write_copy for the arguments and errors."""
    pending = write_copy(source, target, expected, expected_algorithm, mode, make_dirs)
    return seal_copy(pending, fsync_dir)


def _syncfs_reports_errors():
    """syncfs(2) reports writeback errors since Linux 5.8; before, it returned 0 even
    when data was lost, so it must not stand in for fsync there."""
    if platform.system() != "Linux":
        return False
    try:
        major, minor = (int(x) for x in platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


_libc = None
if _syncfs_reports_errors():
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syncfs  # noqa: B018 (missing from old C libraries: AttributeError)
    except (OSError, AttributeError):
        _libc = None


def make_durable(pendings):
    """Flush pending copies to the disk: one syncfs per target filesystem where the
    kernel reports its errors (one journal commit for a whole batch of small files,
    instead of one per file), else an fsync of each. Raises OSError on a write error."""
    todo = [p for p in pendings if not p.durable]
    if not todo:
        return
    if _libc is None:
        for p in todo:
            fd = os.open(p.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    else:
        flushed = set()
        for p in todo:
            if p.device in flushed:
                continue
            fd = os.open(os.path.dirname(p.tmp), os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _libc.syncfs(fd) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, os.strerror(code), os.path.dirname(p.tmp))
            finally:
                os.close(fd)
            flushed.add(p.device)
    for p in todo:
        p.durable = True


def fsync_dirs(paths):
    """fsync each directory once (callers that copy many files batch this)."""
    for path in sorted(set(paths)):
        _fsync_dir(path)
