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
    Job(sources, target, expected, algorithm, mode, mtimes, make_dirs, size)
    Answer(outcomes, error, flushed)   outcomes[i] answers jobs[i]: Done, Failed, or
                                       None when the batch stopped before it
    Done(sha1, size, mode, source, problems)   source: index of the source copied
    Failed(problems, error, stage)     stage: "write" or "seal"
    problems: [(source index, message)] of the sources that could not be used
    error: an exception as data, exception(error) rebuilds it: a CopyError class of
           copyfile.py with its message, or an OSError with its errno and file names.

A job's sources are in order of preference (archive: the primary file; restore: each
copy holding the file). mode None: the source's. mtimes[i]: the modification time to
give the target when source i was used (restore), else None. fail_fast (archive): the
batch stops at its first failure, whose error the Failed carries; otherwise (restore)
a source that fails is a problem and the next one is tried, and a job that no source
gives is Failed without an error. Answer.error is an error that stops the whole batch
(the flush to the disk failed); the jobs done before it are in outcomes.

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
import os
import pickle
import signal
import struct
import sys
import time
from typing import NamedTuple, Optional, Tuple

from .copyfile import (CopyCorrupt, CopyError, PrimaryDamaged, SourceChanged, copy_verified,
                       discard_copy, make_durable, prefetch, reread_from_disk, seal_copy,
                       write_copy)

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


def _ask_ahead(jobs, list_targets, listed):
    for job in jobs:  # asynchronous: the disk queues these reads together
        if job.size < LARGE_FILE and job.sources:
            prefetch(job.sources[0])
    if not list_targets:
        return
    if len(listed) > LISTED_MAX:
        listed.clear()
    for job in jobs:
        folder = os.path.dirname(job.target)
        if folder not in listed:
            listed.add(folder)
            try:
                with os.scandir(folder) as entries:
                    for _ in entries:
                        pass
            except OSError:
                pass  # the copy will say what is wrong


def _write(job, problems, fail_fast):
    """(PendingCopy, source index) from the first source that copies right, or a Failed."""
    durable = job.size >= LARGE_FILE
    for index, source in enumerate(job.sources):
        try:
            return write_copy(source, job.target, job.expected, job.algorithm, job.mode,
                              job.make_dirs, durable), index
        except (CopyError, OSError) as exc:
            if fail_fast:
                return Failed(problems, error_of(exc), "write"), None
            problems.append((index, str(exc)))
    return Failed(problems, None, "write"), None


def _seal(job, pending, index, problems, fail_fast):
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
                result = copy_verified(job.sources[index], job.target, job.expected,
                                       job.algorithm, job.mode, fsync_dir=False,
                                       make_dirs=job.make_dirs)
                break
            except (CopyError, OSError) as exc2:
                problems.append((index, str(exc2)))
        if result is None:
            return Failed(problems, None, "seal")
    if job.mtimes is not None and job.mtimes[index] is not None:
        # Restore gives the file its original modification time back: an archive after
        # the restore then sees it unchanged instead of copying it again.
        os.utime(job.target, (time.time(), job.mtimes[index]))
    return Done(result.sha1, result.size, result.mode, index, problems)


def run_batch(batch, parent=None, listed=None):
    """Copy one batch; returns its Answer. parent: the pid that must still be ours
    before anything is renamed."""
    jobs = batch.jobs
    outcomes = [None] * len(jobs)
    written = {}  # job index -> (PendingCopy, source index): temporary files of ours
    flushed = 0
    try:
        _ask_ahead(jobs, batch.list_targets, set() if listed is None else listed)
        for i, job in enumerate(jobs):
            problems = []
            pending, index = _write(job, problems, batch.fail_fast)
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
            outcomes[i] = _seal(jobs[i], pending, index, problems, batch.fail_fast)
            if batch.fail_fast and isinstance(outcomes[i], Failed):
                break
    except (CopyError, OSError) as exc:
        return Answer(outcomes, error_of(exc), flushed)
    finally:
        for pending, _, _ in written.values():  # written, never sealed: given up
            discard_copy(pending)
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
