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
    # The source's identity while it was read (unchanged from start to end): device,
    # inode, size, mtime in ns. What purge later checks the primary file against.
    source_id: tuple = None


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
    source_id: tuple = None  # (st_dev, st_ino, st_size, st_mtime_ns) of the source read
    # With dir_fd, target and tmp are names in that directory (opened beneath its root,
    # engine/beneath.py: no path is resolved again) and label is target's full path for
    # messages. The descriptor is the caller's: open until the copy is sealed or dropped.
    dir_fd: int = None
    label: str = None

    @property
    def where(self):
        return self.label or self.target


def identity_of(st):
    """What tells one file apart from another at a path, and a rewritten file from the
    one read: (device, inode, size, mtime in ns, ctime in ns). The ctime also moves on
    a chmod (then purge reads the file to be sure); a write always moves it, even
    when the writer sets the mtime back."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


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


def _sha1_of_fd(fd, drop):
    if drop and hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    h = hashlib.sha1()
    _read_into_hashers(fd, [h])
    return h.hexdigest()


def read_back_sha1(path, drop=True, dir_fd=None):
    """SHA1 of a file as the disk holds it (its cached pages are dropped first, unless
    the caller did that already: reread_from_disk). dir_fd: path is a name in that
    directory, never followed if it is a symbolic link."""
    flags = os.O_RDONLY if dir_fd is None else os.O_RDONLY | os.O_NOFOLLOW
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        return _sha1_of_fd(fd, drop)
    finally:
        os.close(fd)


def _unlink_quietly(path, dir_fd=None):
    """Clean-up after a failure: best effort. A temporary name is never taken for a
    copy and the next run removes it, so a clean-up that fails too (the location went
    read-only, or away) must not hide the error that made us clean up."""
    try:
        os.unlink(path, dir_fd=dir_fd)
    except OSError:
        pass


def write_copy(source, target, expected=None, expected_algorithm=None, mode=None,
               make_dirs=True, durable=True, *, source_fd=None, dir_fd=None, label=None):
    """First half of a verified copy: `source` written to `target`+TMP_SUFFIX, hashed
    on the way and checked (unchanged while read, OMERO's checksum); fsynced unless
    durable=False. Returns a PendingCopy; raises a CopyError subclass or OSError and
    leaves no temporary file when anything is wrong. Never touches `source`.

    expected / expected_algorithm: the checksum OMERO (or a bag manifest) recorded for
    the source. mode: permission bits for the target (default: the source's).
    make_dirs=False: the target's folder must exist already (archive: never re-create
    an unmounted location's tree).

    Beneath a root (restore, engine/beneath.py): dir_fd is the target's directory,
    already opened beneath its root, and target a name in it (make_dirs is then the
    caller's business); label is the target's full path for messages. source_fd: the
    source already opened (beneath its own root), `source` then only names it; this
    function closes it."""
    source, target = os.fspath(source), os.fspath(target)
    tmp = target + TMP_SUFFIX
    where = label or target
    if dir_fd is not None:
        if "/" in target:
            if source_fd is not None:
                os.close(source_fd)
            raise ValueError(f"{target!r}: with dir_fd, a name in that directory")
    elif make_dirs:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    hashers = [hashlib.sha1()]
    if expected and expected_algorithm and expected_algorithm != MANIFEST_ALGORITHM:
        hashers.append(new_hasher(expected_algorithm))
    src = open_noatime_fd(source) if source_fd is None else source_fd
    try:
        before = os.fstat(src)
        # A large file that must be durable now goes through streamcopy's pipeline,
        # which also reads it back; it needs the temporary file readable.
        streamed = durable and streamcopy.AVAILABLE and before.st_size >= streamcopy.WINDOW
        flags = (os.O_RDWR if streamed else os.O_WRONLY) | os.O_CREAT | os.O_EXCL
        if dir_fd is not None:
            flags |= os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError:  # left by a run that was killed: never trusted
            os.unlink(tmp, dir_fd=dir_fd)
            fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
        back_sha1 = None
        tmp_name = tmp if dir_fd is None else where + TMP_SUFFIX
        try:
            if streamed:
                sink = streamcopy.StreamedWriter(fd, tmp_name, _writer(fd, tmp_name),
                                                 hashlib.sha1(), src)
                size = _read_into_hashers(src, hashers, sink)
                back_sha1 = sink.finish()
            else:
                size = _read_into_hashers(src, hashers, _writer(fd, tmp_name))
                if durable:
                    os.fsync(fd)
            device = os.fstat(fd).st_dev
        finally:
            os.close(fd)
        after = os.fstat(src)
    except BaseException:
        _unlink_quietly(tmp, dir_fd)
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
        _unlink_quietly(tmp, dir_fd)
        raise
    mode = before.st_mode & 0o7777 if mode is None else mode
    return PendingCopy(target, tmp, sha1, size, mode, device, durable,
                       reread=back_sha1 is not None, back_sha1=back_sha1,
                       source_id=identity_of(before), dir_fd=dir_fd, label=label)


def seal_copy(pending, fsync_dir=False):
    """Second half, once the temporary file is durable: read it back from the disk,
    compare, give it its mode and its final name. Returns a CopyResult."""
    if pending.dir_fd is not None:
        return _seal_beneath(pending, fsync_dir)
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
    return CopyResult(pending.sha1, pending.size, pending.mode, pending.source_id)


def _seal_beneath(pending, fsync_dir):
    """seal_copy of a copy written by name in a directory descriptor: the temporary
    file is opened without following a link, read back and given its mode through
    that one descriptor (fchmod: chmod by name cannot refuse links on Linux), then
    renamed within the directory (renameat: the final name, even a symbolic link
    left by a symlink-mode purge, is replaced, never followed)."""
    dfd = pending.dir_fd
    try:
        fd = os.open(pending.tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            back = pending.back_sha1 or _sha1_of_fd(fd, drop=not pending.reread)
            if back != pending.sha1:
                raise CopyCorrupt(f"{pending.where}: read back {back}, wrote {pending.sha1}")
            os.fchmod(fd, pending.mode)
        finally:
            os.close(fd)
        os.rename(pending.tmp, pending.target, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        _unlink_quietly(pending.tmp, dfd)
        raise
    if fsync_dir:
        os.fsync(dfd)
    return CopyResult(pending.sha1, pending.size, pending.mode, pending.source_id)


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
    will_need(fd)


def will_need(fd):
    """Ask the kernel to read the open file ahead (no wait), then close it."""
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
    flags = os.O_RDONLY if pending.dir_fd is None else os.O_RDONLY | os.O_NOFOLLOW
    try:
        fd = os.open(pending.tmp, flags, dir_fd=pending.dir_fd)
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
    _unlink_quietly(pending.tmp, pending.dir_fd)


def copy_verified(source, target, expected=None, expected_algorithm=None, mode=None,
                  fsync_dir=True, make_dirs=True, *, source_fd=None, dir_fd=None, label=None):
    """Copy `source` to `target` verified, with an fsync of its own; returns
    CopyResult(sha1, size, mode). See write_copy for the arguments and errors."""
    pending = write_copy(source, target, expected, expected_algorithm, mode, make_dirs,
                         source_fd=source_fd, dir_fd=dir_fd, label=label)
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
            fd = os.open(p.tmp, os.O_RDONLY if p.dir_fd is None
                         else os.O_RDONLY | os.O_NOFOLLOW, dir_fd=p.dir_fd)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    else:
        flushed = set()
        for p in todo:
            if p.device in flushed:
                continue
            if p.dir_fd is not None:  # the caller's: syncfs through it, left open
                if _libc.syncfs(p.dir_fd) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, os.strerror(code), os.path.dirname(p.where))
                flushed.add(p.device)
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
