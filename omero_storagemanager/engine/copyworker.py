"""A copy worker process: the per-file half of archive and restore (engine/batchcopy.py).

Copying many small files is mostly system calls, a few dozen per file. Run in threads
of one process, every call gives up and takes back the interpreter lock, and the threads
spent more time fighting over it (about 160 futex calls per file) than copying. So the
per-file work runs here, in separate processes, at most one per core:

    python -m omero_storagemanager.engine.copyworker PARENT_PID

A plain subprocess, not multiprocessing: django-q2 runs jobs in daemonic processes,
which may not have multiprocessing children. No Django here.

Protocol. Both ways, frames: an 8-byte big-endian length, then a pickle of that many
bytes. Parent to worker (stdin): one Batch per frame; the end of stdin ends the worker
(exit status 0). Worker to parent (stdout): one Answer per batch, in the order of the
batches. Pickles pass only between this module and the driver of the same installation
(the parent starts the worker with its own interpreter), never anything from outside.

    Batch(jobs, fail_fast, list_targets)
    Job(sources, target, expected, algorithm, mode, mtimes, make_dirs, size,
        target_root, source_roots)
    Answer(outcomes, error, flushed)   outcomes[i] answers jobs[i]: Done, Failed, or
                                       None when the batch stopped before it
    Done(sha1, size, mode, source, problems)   source: index of the source copied
    Failed(problems, error, stage)     stage: "target", "write" or "seal"
    problems: [(source index, message)] of the sources that could not be used; index
           None: the target itself could not be written (stage "target")
    error: an exception as data, exception(error) rebuilds it: a CopyError class of
           copyfile.py with its message, or an OSError with its errno and file names.

A job's sources are in order of preference (archive: the primary file; restore: each
copy holding the file). mode None: the source's. mtimes[i]: the modification time in
nanoseconds to give the target when source i was used (restore), else None; with
mtimes, Done.target_id is the target's identity once its time is set. fail_fast (archive): the
batch stops at its first failure, whose error the Failed carries; otherwise (restore)
a source that fails is a problem and the next one is tried, and a job that no source
gives is Failed without an error. Answer.error is an error that stops the whole batch
(the flush to the disk failed); the jobs done before it are in outcomes.

Beneath a root (restore; engine/beneath.py). target_root: the target is relative to
that root, and every directory from the root down to the target's is opened by
descriptor without following a symbolic link (made when missing if make_dirs); the
file is then written, read back, given its mode, renamed and timed through that
descriptor. A symbolic link (or a ".." or an absolute path) on the way is refused
(OutsideRoot): Failed at stage "target", with the refusal as its problem, nothing
written. source_roots[i]: source i is relative to that root, opened the same way and
O_NOFOLLOW. The descriptors are opened once per folder per batch and closed when the
batch ends.

Per batch, as copyfile.py wants it: ask the kernel for every small source (and, for
restore, list each target folder once: creating a file in a folder whose blocks are not
cached waits on the disk while holding the folder's lock; a listing reads them all at
once); write each job under its temporary name (durable=False below LARGE_FILE: one
flush for them all, make_durable); ask the disk for the copies again (reread_from_disk);
then read each back and give it its name (seal_copy). Nothing gets its final name before
it is durable and read back from the disk. On every failure path the batch removes its
temporary files (discard_copy); only a killed worker leaves some (TMP_SUFFIX: never
trusted, and the next run removes them).

Stopping: SIGTERM or SIGINT lets the current batch finish (it cleans up after itself)
and the worker exits without taking another. stderr carries tracebacks only.
"""
import ctypes
import errno
import os
import pickle
import signal
import struct
import sys
import time
from typing import NamedTuple, Optional, Tuple

from . import beneath
from .copyfile import (CopyCorrupt, CopyError, PrimaryDamaged, SourceChanged,
                       copy_verified, discard_copy, identity_of, make_durable, prefetch,
                       reread_from_disk, seal_copy, will_need, write_copy)

LARGE_FILE = 4 << 20  # fsynced on its own: its data, not the journal commit, dominates
HEADER = struct.Struct("!Q")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
LISTED_MAX = 100000  # target folders remembered as listed (restore)
_COPY_ERRORS = {c.__name__: c
                for c in (CopyError, PrimaryDamaged, SourceChanged, CopyCorrupt)}


class Job(NamedTuple):
    sources: Tuple[str, ...]
    target: str
    expected: Optional[str] = None
    algorithm: Optional[str] = None
    mode: Optional[int] = None
    mtimes: Optional[tuple] = None
    make_dirs: bool = True
    size: int = 0
    target_root: Optional[str] = None  # target is relative to it, written beneath it
    source_roots: Optional[tuple] = None  # sources[i] relative to source_roots[i]


class Batch(NamedTuple):
    jobs: list
    fail_fast: bool = True
    list_targets: bool = False


class Done(NamedTuple):
    sha1: str
    size: int
    mode: int
    source: int
    problems: list
    source_id: Optional[tuple] = None  # copyfile.identity_of the source while read
    target_id: Optional[tuple] = None  # ... of the target under its name, its mtime set


class Failed(NamedTuple):
    problems: list
    error: Optional[tuple]
    stage: str


class Answer(NamedTuple):
    outcomes: list
    error: Optional[tuple]
    flushed: int  # files made durable by the batch's one flush


def error_of(exc):
    """An exception of a copy as data that crosses the pipe."""
    if isinstance(exc, CopyError):
        name = type(exc).__name__
        return (name if name in _COPY_ERRORS else "CopyError", str(exc))
    return ("OSError", exc.errno, exc.strerror, exc.filename, exc.filename2, str(exc))


def exception(error):
    """The exception error_of described: same class (OSError's errno picks the same
    subclass, FileNotFoundError...), same message."""
    if error[0] != "OSError":
        return _COPY_ERRORS[error[0]](error[1])
    _, code, strerror, filename, filename2, text = error
    if code is None:
        return OSError(text)
    return OSError(code, strerror, filename, None, filename2)


def write_frame(stream, obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream):
    """The next object, or None at the end of the stream (EOFError if it ends mid-frame)."""
    head = stream.read(HEADER.size)
    if not head:
        return None
    if len(head) < HEADER.size:
        raise EOFError("the stream ended inside a frame header")
    size, = HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the stream ended inside a frame")
    return pickle.loads(data)


class _Dirs:
    """The directories of one batch's rooted jobs, each opened once beneath its root
    (engine/beneath.py) and kept open until the batch ends: a restore of a folder of
    small files opens its folder once, not once per file. A refused or missing
    directory is not remembered: each job asking for it gets its own error."""

    def __init__(self):
        self.roots = {}  # root -> descriptor
        self.fds = {}  # (root, (component, ...)) -> descriptor

    def folder(self, root, parts, create=False):
        key = (root, parts)
        fd = self.fds.get(key)
        if fd is None:
            rfd = self.roots.get(root)
            if rfd is None:
                rfd = self.roots[root] = beneath.open_root(root)
            try:  # openat2 where the kernel has it: one call for the whole path
                fd = beneath.open_dir(rfd, parts, root_name=root)
            except FileNotFoundError:
                if not create:
                    raise
                # Made one by one below the root, as os.makedirs made them (mode
                # 0777 less the umask), each an O_NOFOLLOW step.
                fd = beneath.open_dir(rfd, parts, create=True, mode=0o777, root_name=root)
            self.fds[key] = fd
        return fd

    def parent(self, root, relpath, create=False):
        """(descriptor of the folder, name) of root/relpath. An absolute or climbing
        relpath is refused (OutsideRoot)."""
        if os.path.isabs(relpath):
            raise beneath.OutsideRoot(errno.EXDEV, f"{relpath} is not below {root}: "
                                                   "refused", relpath)
        parts = beneath.split(relpath)
        return self.folder(root, tuple(parts[:-1]), create), parts[-1]

    def open_source(self, root, relpath):
        """A read descriptor of root/relpath: no link on the way nor at the end."""
        dfd, name = self.parent(root, relpath)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            try:
                return os.open(name, flags | getattr(os, "O_NOATIME", 0), dir_fd=dfd)
            except PermissionError:  # O_NOATIME needs the file's owner
                return os.open(name, flags, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise beneath.OutsideRoot(
                    exc.errno, f"{os.path.join(root, relpath)} is a symbolic link: refused",
                    os.path.join(root, relpath)) from None
            raise

    def close(self):
        for fd in list(self.fds.values()) + list(self.roots.values()):
            os.close(fd)
        self.fds.clear()
        self.roots.clear()


def _source_fd(job, index, dirs):
    """(what names source index, its descriptor or None: write_copy opens it by path)."""
    source = job.sources[index]
    if job.source_roots is None or job.source_roots[index] is None:
        return source, None
    root = job.source_roots[index]
    return os.path.join(root, source), dirs.open_source(root, source)


def _prefetch(job, dirs):
    if job.source_roots is None or job.source_roots[0] is None:
        prefetch(job.sources[0])
        return
    try:
        fd = _source_fd(job, 0, dirs)[1]
    except OSError:
        return  # the copy itself will say what is wrong
    will_need(fd)


def _ask_ahead(jobs, list_targets, listed, dirs):
    for job in jobs:  # asynchronous: the disk queues these reads together
        if job.size < LARGE_FILE and job.sources and hasattr(os, "posix_fadvise"):
            _prefetch(job, dirs)
    if not list_targets:
        return
    if len(listed) > LISTED_MAX:
        listed.clear()
    for job in jobs:
        if job.target_root is None:
            folder = os.path.dirname(job.target)
        else:
            folder = (job.target_root, os.path.dirname(job.target))
        if folder not in listed:
            listed.add(folder)
            try:
                if job.target_root is None:
                    where = folder
                else:  # never made here: the job makes it, or says it cannot
                    where = dirs.parent(job.target_root, job.target)[0]
                with os.scandir(where) as entries:
                    for _ in entries:
                        pass
            except OSError:
                pass  # the copy will say what is wrong


def _message(exc, named=False):
    """A problem's text: a refusal says what it refused itself (no errno in front)."""
    if isinstance(exc, beneath.OutsideRoot) and exc.strerror:
        return exc.strerror
    if named and isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f" ({exc.filename})" if exc.filename else "")
    return str(exc)


def _target(job, dirs):
    """(folder descriptor or None, name or path, full path for messages) of the target."""
    if job.target_root is None:
        return None, job.target, job.target
    dfd, name = dirs.parent(job.target_root, job.target, create=job.make_dirs)
    return dfd, name, os.path.join(job.target_root, job.target)


def _write(job, problems, fail_fast, dirs):
    """(PendingCopy, source index) from the first source that copies right, or a Failed."""
    durable = job.size >= LARGE_FILE
    try:
        dfd, target, label = _target(job, dirs)
    except OSError as exc:  # the target's folder: refused (a link on the way) or unmade
        where = (job.target if job.target_root is None
                 else os.path.join(job.target_root, job.target))
        problems.append((None, f"{where}: not written: {_message(exc, True)}"))
        return Failed(problems, error_of(exc), "target"), None
    for index, _ in enumerate(job.sources):
        try:
            source, fd = _source_fd(job, index, dirs)
            return write_copy(source, target, job.expected, job.algorithm, job.mode,
                              job.make_dirs, durable, source_fd=fd, dir_fd=dfd,
                              label=label if dfd is not None else None), index
        except (CopyError, OSError) as exc:
            if fail_fast:
                return Failed(problems, error_of(exc), "write"), None
            problems.append((index, _message(exc)))
    return Failed(problems, None, "write"), None


def _seal(job, pending, index, problems, fail_fast, dirs):
    """Done once the target is verified under its name; a copy that reads back wrong
    falls back to the sources not tried yet, each with its own fsync."""
    try:
        result = seal_copy(pending)
    except (CopyError, OSError) as exc:
        if fail_fast:
            return Failed(problems, error_of(exc), "seal")
        problems.append((index, str(exc)))
        result = None
        for index in range(index + 1, len(job.sources)):
            try:
                source, fd = _source_fd(job, index, dirs)
                result = copy_verified(source, pending.target, job.expected,
                                       job.algorithm, job.mode, fsync_dir=False,
                                       make_dirs=job.make_dirs, source_fd=fd,
                                       dir_fd=pending.dir_fd, label=pending.label)
                break
            except (CopyError, OSError) as exc2:
                problems.append((index, _message(exc2)))
        if result is None:
            return Failed(problems, None, "seal")
    dfd = pending.dir_fd  # None: pending.target is a path
    if job.mtimes is not None and job.mtimes[index] is not None:
        # Restore gives the file its original modification time back, to the
        # nanosecond: an archive after the restore then sees it unchanged instead of
        # copying it again.
        os.utime(pending.target, ns=(time.time_ns(), job.mtimes[index]), dir_fd=dfd,
                 follow_symlinks=False)
    target_id = (identity_of(os.stat(pending.target, dir_fd=dfd, follow_symlinks=False))
                 if job.mtimes is not None else None)
    return Done(result.sha1, result.size, result.mode, index, problems, result.source_id,
                target_id)


def run_batch(batch, parent=None, listed=None):
    """Copy one batch; returns its Answer. parent: the pid that must still be ours
    before anything is renamed."""
    jobs = batch.jobs
    outcomes = [None] * len(jobs)
    written = {}  # job index -> (PendingCopy, source index): temporary files of ours
    flushed = 0
    dirs = _Dirs()
    try:
        _ask_ahead(jobs, batch.list_targets, set() if listed is None else listed, dirs)
        for i, job in enumerate(jobs):
            problems = []
            pending, index = _write(job, problems, batch.fail_fast, dirs)
            if index is None:
                outcomes[i] = pending
                if batch.fail_fast:
                    return Answer(outcomes, None, flushed)
            else:
                written[i] = (pending, index, problems)
        unsynced = [p for p, _, _ in written.values() if not p.durable]
        make_durable(unsynced)
        flushed = len(unsynced)
        for pending, _, _ in written.values():
            reread_from_disk(pending)
        if parent is not None and os.getppid() != parent:
            # Our parent died (and PR_SET_PDEATHSIG did not kill us): a resumed run may
            # be copying these files now. Rename nothing; `finally` removes ours.
            raise SystemExit("copy worker: the parent process is gone")
        for i in list(written):
            pending, index, problems = written.pop(i)
            outcomes[i] = _seal(jobs[i], pending, index, problems, batch.fail_fast, dirs)
            if batch.fail_fast and isinstance(outcomes[i], Failed):
                break
    except (CopyError, OSError) as exc:
        return Answer(outcomes, error_of(exc), flushed)
    finally:
        for pending, _, _ in written.values():  # written, never sealed: given up
            discard_copy(pending)
        dirs.close()  # after the discards: they unlink through these descriptors
    return Answer(outcomes, None, flushed)


def _die_with_parent(parent):
    """Why: a job killed with kill -9 and then resumed must never have an orphan worker
    of the killed run renaming files behind the resumed run's back. So the kernel kills
    us when our parent goes (Linux; the signal fires when the parent *thread* that
    started us exits: the driver starts workers from the thread that iterates the copy).
    If the parent died before prctl, no signal will come: getppid() tells, exit now."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0))
        except (OSError, AttributeError):
            pass  # getppid() before each batch's renames still guards
    if os.getppid() != parent:
        raise SystemExit("copy worker: the parent process is gone")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parent = int(argv[0])
    _die_with_parent(parent)
    stop = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: stop.append(signum))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must never corrupt the answers
    listed = set()
    while not stop:
        batch = read_frame(stdin)
        if batch is None or stop:
            break
        write_frame(stdout, run_batch(batch, parent, listed))
    return 0


if __name__ == "__main__":
    # Run from the package's own module, not as __main__: the answers' classes must
    # pickle as omero_storagemanager.engine.copyworker.*, which the parent can load.
    from omero_storagemanager.engine import copyworker

    sys.exit(copyworker.main())
