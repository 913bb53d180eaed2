"""The parent's side of the stat/verify worker processes (engine/statworker.py).

WorkerPool starts one worker per core and is the target of the COPY that streams every
file of the repository (engine/bulk.py): rows are passed on in pieces, the workers'
progress lines are read as they come, and their figures collected at the end.
"""
import fcntl
import pickle
import struct
import subprocess
import sys
import termios
import threading

FLUSH_ROWS = 2000  # rows go to a worker in pieces of this many (about 300 KiB)
PIPE_BYTES = 1 << 20  # each worker's input pipe: room for a few pieces (Linux's default
# unprivileged maximum; the default 64 KiB holds less than one piece)


class StatWorkerFailed(RuntimeError):
    """A stat/verify worker process died or answered nonsense."""


class WorkerPool:
    """Stat worker processes fed with COPY rows; `write` is the COPY target.

    Rows go in pieces of FLUSH_ROWS to the worker with the least input waiting (a unit
    split over two workers is merged afterwards): strict turns made the feed wait on
    whichever worker was behind while the other ran dry (measured: the two workers
    used one core between them). Writes block when a worker's pipe is full, so memory
    stays flat whatever the number of files. Progress comes back on the workers'
    stderr."""

    def __init__(self, paths, verify, processes, progress=None):
        mode = ["verify"] if verify else []
        command = [sys.executable, "-m", "omero_storagemanager.engine.statworker",
                   paths.managed_dir, paths.data_dir] + mode
        self.procs = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE) for _ in range(processes)]
        for proc in self.procs:
            _widen_pipe(proc.stdin.fileno())
        self.progress = progress
        self.pending, self.next = [], 0
        self.lock = threading.Lock()
        self.done_files = self.done_bytes = 0
        self.errors = [[] for _ in self.procs]
        self.readers = [threading.Thread(target=self._read_stderr, args=(i,), daemon=True)
                        for i in range(len(self.procs))]
        for t in self.readers:
            t.start()

    def _read_stderr(self, index):
        for line in self.procs[index].stderr:
            if line.startswith(b"progress "):
                _, files, nbytes = line.split()
                with self.lock:
                    self.done_files += int(files)
                    self.done_bytes += int(nbytes)
            else:
                self.errors[index].append(line.decode(errors="replace"))

    def report(self):
        if self.progress is not None:
            with self.lock:
                files, nbytes = self.done_files, self.done_bytes
                self.done_files = self.done_bytes = 0
            if files:
                self.progress.advance(0, files, nbytes)

    def write(self, row):
        # Called once per row by psycopg2: as little work as possible.
        pending = self.pending
        pending.append(row)
        if len(pending) >= FLUSH_ROWS:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        proc = self._least_loaded()
        try:
            proc.stdin.write(b"".join(self.pending))
            proc.stdin.flush()
        except BrokenPipeError:
            raise self._failure(self.procs.index(proc)) from None
        self.pending = []
        self.report()

    def _least_loaded(self):
        """The worker whose pipe holds the fewest unread bytes (ties: in turn)."""
        count = len(self.procs)
        order = [(self.next + i) % count for i in range(count)]
        self.next = (self.next + 1) % count
        return self.procs[min(order, key=lambda i: _unread(self.procs[i].stdin.fileno()))]

    def finish(self):
        """Close the input; [(units, problems)] of every worker."""
        self.flush()
        for index, proc in enumerate(self.procs):
            try:
                proc.stdin.close()
            except BrokenPipeError:
                raise self._failure(index) from None
        results = []
        for index, proc in enumerate(self.procs):
            try:
                results.append(pickle.load(proc.stdout))
            except (EOFError, pickle.UnpicklingError):
                proc.wait()
                self.readers[index].join()
                raise self._failure(index) from None
            proc.wait()
        for t in self.readers:
            t.join()
        self.report()
        return results

    def _failure(self, index):
        proc = self.procs[index]
        proc.wait()
        self.readers[index].join(timeout=5)
        tail = "".join(self.errors[index]).strip().splitlines()[-1:] or ["no message"]
        return StatWorkerFailed(f"stat worker exited with {proc.returncode}: {tail[0]}")

    def kill(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _widen_pipe(fd):
    if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux only
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # a lower pipe-max-size: the default works, only slower


def _unread(fd):
    """Bytes written to a pipe and not read yet (FIONREAD; 0 where unknown)."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0
