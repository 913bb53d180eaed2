"""Many verified copies at once, in worker processes; small files share one flush.

An fsync per file costs a journal commit per file: for a collection of 20 KiB files
that, not the copying, sets the pace. So files go to the copy workers in batches of up
to BATCH_FILES files or BATCH_BYTES bytes; a worker writes a batch's small files
unsynced, makes them durable together (one syncfs of the target filesystem, where the
kernel reports its errors), and only then reads each back from the disk and renames it
(copyworker.py). The invariant of copyfile.py holds for every file: nothing gets its
final name before it is durable and has been read back. Files of LARGE_FILE bytes or
more (copyworker.py) are fsynced on their own.

Why processes, not threads: the per-file work is a few dozen system calls, and threads
of one interpreter spend more on its lock than on copying (engine/copyworker.py). The
workers are plain subprocesses, at most one per core, started as batches need them
from the thread that iterates copy_in_processes: a worker dies with the thread that
started it (PR_SET_PDEATHSIG fires when the parent *thread* ends), so they must never
be started from a helper thread. This thread takes items lazily (memory stays flat
whatever their number), keeps DEPTH batches in flight per worker (a worker always has
its next batch when it finishes one) and yields (item, outcome) as batches come back.
Per worker, one thread writes its batches and one reads its answers; each wakes once
per batch, so they do not fight over the interpreter lock.

Stopping (the consumer raised or closed the generator, a worker failed): no more
batches are sent; the workers are asked to stop (SIGTERM: they finish their current
batch, which cleans up after itself) and their input is closed; after STOP_WAIT they
are killed. A worker that dies unexpectedly is a CopyError naming its exit status and
the end of its stderr.
"""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from queue import SimpleQueue

from .copyfile import CopyError
from .copyworker import Batch, Failed, exception, read_frame, write_frame

BATCH_FILES = 256  # small files made durable together
BATCH_BYTES = 64 << 20  # at most this much unsynced data waits for a flush
DEPTH = 2  # batches in flight per worker
STOP_WAIT = 10  # seconds a stopped worker has to finish its batch before it is killed
WORKER = "omero_storagemanager.engine.copyworker"


class _Worker:
    """One copy worker process, the batches sent to it and the threads on its pipes."""

    def __init__(self, answers):
        self.stderr = tempfile.TemporaryFile()  # read only when it failed
        self.proc = subprocess.Popen([sys.executable, "-m", WORKER, str(os.getpid())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr)
        self.sent = deque()  # items of the batches sent, whose answers are to come
        self.inbox = SimpleQueue()  # frames for the writer; None closes the input
        self.answers = answers
        self.threads = [threading.Thread(target=self._write, daemon=True),
                        threading.Thread(target=self._read, daemon=True)]
        for thread in self.threads:
            thread.start()

    def send(self, items, batch):
        self.sent.append(items)
        self.inbox.put(batch)

    def _write(self):
        # In its own thread: a write blocks while the worker is busy with the batch
        # before, and the driver must meanwhile take the other workers' answers.
        stdin = self.proc.stdin
        try:
            while True:
                batch = self.inbox.get()
                if batch is None:
                    break
                write_frame(stdin, batch)
        except OSError:
            pass  # the worker died: its reader says so
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _read(self):
        try:
            while True:
                answer = read_frame(self.proc.stdout)
                self.answers.put((self, answer))
                if answer is None:
                    return
        except BaseException:  # cut mid-frame, or garbage: the worker failed
            self.answers.put((self, None))

    def failure(self):
        """The CopyError that says this worker died, how, and the end of its stderr."""
        try:
            code = self.proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:  # closed its output yet lives: end it
            self.proc.kill()
            code = self.proc.wait()
        how = f"exit status {code}"
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                pass
        self.stderr.seek(0)
        lines = self.stderr.read()[-4000:].decode(errors="replace").strip().splitlines()
        tail = " | ".join(line.strip() for line in lines[-3:]) or "no message"
        return CopyError(f"copy worker (pid {self.proc.pid}) died ({how}) with "
                         f"{sum(len(s) for s in self.sent)} file(s) in hand: {tail}")

    def stop(self, urgent):
        if urgent and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.inbox.put(None)

    def finish(self, deadline):
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # its batch takes too long: its temporary
            self.proc.kill()               # files stay, never trusted, removed next run
            self.proc.wait()
        for thread in self.threads:
            thread.join(timeout=STOP_WAIT)
        self.proc.stdout.close()
        self.stderr.close()


def _take(source, job_of):
    """The next batch: [(item, job)] up to BATCH_FILES files or BATCH_BYTES bytes."""
    batch, size = [], 0
    while len(batch) < BATCH_FILES and size < BATCH_BYTES:
        item = next(source, _END)
        if item is _END:
            break
        job = job_of(item)
        batch.append((item, job))
        size += job.size
    return batch


_END = object()


def copy_in_processes(items, job_of, workers=4, fail_fast=True, list_targets=False,
                      stats=None):
    """Copy `items` (any iterable, read lazily) in copy worker processes; yields
    (item, outcome) as their batches come back: a copyworker.Done, or a Failed.

    job_of(item) -> copyworker.Job, called in this thread just before the item is sent.
    workers: processes, at most one per core. fail_fast (archive): a Failed is the last
    outcome yielded; the caller raises (if it goes on, its error is raised here).
    list_targets (restore): the workers list each target folder before writing into it.
    stats: an optional dict, counts "batches" and "flushed" (files made durable by the
    batches' shared flushes). A batch's error (its flush failed) is raised here, after
    the outcomes of the jobs done before it. Use with contextlib.closing: the workers
    stop when the generator is closed."""
    count = max(1, min(workers, os.cpu_count() or 1))
    source, answers, pool = iter(items), SimpleQueue(), []
    exhausted = finished = False
    try:
        while True:
            while not exhausted:
                worker = min(pool, key=lambda w: len(w.sent), default=None)
                if worker is not None and len(worker.sent) >= DEPTH:
                    break
                batch = _take(source, job_of)
                if not batch:
                    exhausted = True
                    break
                if len(pool) < count and (worker is None or worker.sent):
                    # Started when there is a batch for it: a collection of a few
                    # files does not wait for processes it has no work for.
                    worker = _Worker(answers)
                    pool.append(worker)
                worker.send([item for item, _ in batch],
                            Batch([job for _, job in batch], fail_fast, list_targets))
            if not any(w.sent for w in pool):
                finished = True
                return
            worker, answer = answers.get()
            if answer is None:
                raise worker.failure()
            batch = worker.sent.popleft()
            if stats is not None:
                stats["batches"] = stats.get("batches", 0) + 1
                stats["flushed"] = stats.get("flushed", 0) + answer.flushed
            for item, outcome in zip(batch, answer.outcomes):
                if outcome is not None:
                    yield item, outcome
                    if fail_fast and isinstance(outcome, Failed):
                        raise exception(outcome.error)
            if answer.error is not None:
                raise exception(answer.error)
    finally:
        for worker in pool:
            worker.stop(urgent=not finished)
        deadline = time.monotonic() + STOP_WAIT
        for worker in pool:
            worker.finish(deadline)
