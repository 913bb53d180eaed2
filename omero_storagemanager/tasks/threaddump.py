"""Thread dumps of the workers, for the support bundle (manual 9: "dump thread
information"; issue 20).

A worker registers itself the first time it runs a job: faulthandler writes every
thread's stack to <var_dir>/threads/<pid>.txt on SIGUSR1, and <pid>.start records the
process's start time. `collect()` signals only processes that registered and are still
the same process (same start time: a recycled pid of another program is never
signalled, since SIGUSR1 would end it).
"""
import faulthandler
import glob
import os
import signal
import time

from .. import settings

_registered = {}  # pid -> the open dump file (kept open: faulthandler writes to it)


def dump_dir():
    return os.path.join(settings.var_dir(), "threads")


def _start_time(pid):
    """The process's start time in clock ticks since boot (/proc/<pid>/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def register():
    """Make this process answer SIGUSR1 with a thread dump (once per process)."""
    pid = os.getpid()
    if pid in _registered or _start_time(pid) is None:
        return
    folder = dump_dir()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(folder, f"{pid}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                 0o600)
    dump = os.fdopen(fd, "a")
    faulthandler.register(signal.SIGUSR1, file=dump, all_threads=True, chain=False)
    _registered[pid] = dump
    with open(os.open(os.path.join(folder, f"{pid}.start"),
                      os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(_start_time(pid))


def collect(wait=3.0):
    """{pid: thread dump text} of every registered worker alive on this host."""
    asked = {}
    for start_file in glob.glob(os.path.join(dump_dir(), "*.start")):
        pid = int(os.path.basename(start_file).split(".")[0])
        dump_file = start_file[:-len(".start")] + ".txt"
        with open(start_file) as f:
            recorded = f.read().strip()
        if _start_time(pid) != recorded:  # gone, or the pid now belongs to another
            for stale in (start_file, dump_file):
                if os.path.exists(stale):
                    os.unlink(stale)
            continue
        size = os.path.getsize(dump_file) if os.path.exists(dump_file) else 0
        os.kill(pid, signal.SIGUSR1)
        asked[pid] = (dump_file, size)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(
            os.path.getsize(path) <= size for path, size in asked.values()):
        time.sleep(0.1)
    time.sleep(0.2)  # let the last lines of each dump land
    found = {}
    for pid, (path, size) in asked.items():
        with open(path, "rb") as f:
            f.seek(size)
            found[pid] = f.read().decode("utf-8", "replace")
    return found
