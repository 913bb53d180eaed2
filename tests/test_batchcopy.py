"""engine/batchcopy.py (copies in worker processes), engine/copyworker.py and the two
halves of a verified copy (engine/copyfile.py), on real files: small files share a
flush, nothing gets its final name unverified, a run stopped by an error leaves no
temporary file behind, and a worker never outlives its parent.

What needs a fault injected inside a worker (a read-back that differs, syncfs missing)
calls the worker's batch function, copyworker.run_batch, in this process, where
monkeypatch works; the rest runs through real worker processes."""
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing

import pytest

from omero_storagemanager.engine import batchcopy, copyfile, copyworker
from omero_storagemanager.engine.batchcopy import copy_in_processes
from omero_storagemanager.engine.copyfile import (TMP_SUFFIX, CopyCorrupt, CopyError,
                                                  seal_copy, write_copy)
from omero_storagemanager.engine.copyworker import (Batch, Done, Failed, Job, exception,
                                                    run_batch)


def make_sources(root, sizes):
    root.mkdir()
    items = []
    for i, size in enumerate(sizes):
        path = root / f"f {i:04d}\tü.bin"  # odd names: a tab, non-ASCII
        path.write_bytes(os.urandom(size))
        items.append((str(path), hashlib.sha1(path.read_bytes()).hexdigest(), size))
    return items


def job_for(dest):
    def job_of(item):
        path, digest, size = item
        return Job((path,), str(dest / os.path.basename(path)), digest, "SHA1-160",
                   size=size)
    return job_of


def run(items, dest, workers=2, stats=None):
    """As archive does: every file or the first error, raised."""
    dest.mkdir(exist_ok=True)
    results = []
    with closing(copy_in_processes(items, job_for(dest), workers, stats=stats)) as copies:
        for item, outcome in copies:
            if isinstance(outcome, Failed):
                raise exception(outcome.error)
            results.append((item, outcome))
    return results


def leftovers(dest):
    return [n for n in os.listdir(dest) if n.endswith(TMP_SUFFIX)]


def assert_named_files_verified(dest, items):
    """Whatever got its final name is a whole, verified copy."""
    for name in os.listdir(dest):
        if name.endswith(TMP_SUFFIX):
            continue
        source = next(i for i in items if os.path.basename(i[0]) == name)
        assert hashlib.sha1((dest / name).read_bytes()).hexdigest() == source[1], name


def copyworkers_of(pid):
    """pids of the copy workers whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"copyworker" in cmdline:
            found.append(int(entry))
    return found


def gone(pid):
    """The process has exited (a zombie that nobody reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return True


def test_small_files_share_flushes_and_all_arrive_verified(tmp_path, monkeypatch):
    monkeypatch.setattr(batchcopy, "BATCH_FILES", 100)
    sizes = [1 + (i * 7919) % 30000 for i in range(700)] + [copyworker.LARGE_FILE + 5]
    items = make_sources(tmp_path / "src", sizes)
    stats = {}
    results = run(items, tmp_path / "dst", stats=stats)
    assert sorted(r.sha1 for _, r in results) == sorted(d for _, d, _ in items)
    for path, digest, size in items:
        copied = tmp_path / "dst" / os.path.basename(path)
        assert hashlib.sha1(copied.read_bytes()).hexdigest() == digest
    assert leftovers(tmp_path / "dst") == []
    # 700 small files made durable by one flush per batch of at most BATCH_FILES; the
    # large one fsynced on its own.
    assert stats == {"batches": 8, "flushed": 700}, stats


def test_without_syncfs_each_file_is_fsynced_instead(tmp_path, monkeypatch):
    monkeypatch.setattr(copyfile, "_libc", None)
    items = make_sources(tmp_path / "src", [100] * 40)
    (tmp_path / "dst").mkdir()
    fsynced, real = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: fsynced.append(fd) or real(fd))
    answer = run_batch(Batch([job_for(tmp_path / "dst")(i) for i in items]))
    assert answer.error is None and answer.flushed == 40
    assert all(isinstance(o, Done) for o in answer.outcomes)
    assert len(fsynced) == 40 and leftovers(tmp_path / "dst") == []


def test_a_copy_that_reads_back_wrong_never_gets_its_name(tmp_path, monkeypatch):
    items = make_sources(tmp_path / "src", [5000] * 30)
    dest = tmp_path / "dst"
    dest.mkdir()
    victim = str(dest / os.path.basename(items[17][0]))

    def seal(pending, *args):
        if pending.target == victim:  # the disk returns other bytes than were written
            with open(pending.tmp, "r+b") as f:
                f.write(b"X")
        return seal_copy(pending, *args)

    monkeypatch.setattr(copyworker, "seal_copy", seal)
    answer = run_batch(Batch([job_for(dest)(i) for i in items]))
    failed = answer.outcomes[17]
    assert isinstance(failed, Failed) and failed.stage == "seal"
    with pytest.raises(CopyCorrupt, match="read back"):
        raise exception(failed.error)
    assert all(isinstance(o, Done) for o in answer.outcomes[:17])
    assert answer.outcomes[18:] == [None] * 12  # the batch stopped there
    assert not os.path.exists(victim)
    assert leftovers(dest) == []
    assert_named_files_verified(dest, items)


def test_restore_falls_back_to_the_next_source_and_sets_the_time(tmp_path, monkeypatch):
    (good, digest, size), = make_sources(tmp_path / "src", [3000])
    bad = tmp_path / "bad copy"
    bad.write_bytes(b"not the file")
    dest = tmp_path / "back" / "deep" / "file"  # folders made: make_dirs
    reading_wrong = [True]

    def seal(pending, *args):  # the first copy written reads back wrong
        if reading_wrong.pop() if reading_wrong else False:
            with open(pending.tmp, "r+b") as f:
                f.write(b"X")
        return seal_copy(pending, *args)

    monkeypatch.setattr(copyworker, "seal_copy", seal)
    mtime = 1_500_000_000_123_456_789  # ns (Job.mtimes), given back exactly
    job = Job((str(tmp_path / "missing"), str(bad), good, good), str(dest), digest,
              "SHA1-160", 0o640, (None, None, mtime - 1, mtime), size=size)
    answer = run_batch(Batch([job], fail_fast=False, list_targets=True))
    done, = answer.outcomes
    assert isinstance(done, Done) and done.source == 3 and done.sha1 == digest
    assert [index for index, _ in done.problems] == [0, 1, 2]
    assert "No such file" in done.problems[0][1] and "checksum" in done.problems[1][1]
    assert "read back" in done.problems[2][1]
    assert os.stat(dest).st_mtime_ns == mtime and (os.stat(dest).st_mode & 0o777) == 0o640
    assert os.listdir(dest.parent) == ["file"]
    nothing = run_batch(Batch([job._replace(sources=(str(bad),), mtimes=None)],
                              fail_fast=False))
    assert isinstance(nothing.outcomes[0], Failed) and nothing.outcomes[0].error is None


def test_no_rename_once_the_parent_is_gone(tmp_path):
    items = make_sources(tmp_path / "src", [2000] * 10)
    (tmp_path / "dst").mkdir()
    not_our_parent = os.getppid() + 1
    with pytest.raises(SystemExit, match="parent"):
        run_batch(Batch([job_for(tmp_path / "dst")(i) for i in items]), not_our_parent)
    assert os.listdir(tmp_path / "dst") == []  # nothing renamed, nothing left


def test_an_error_mid_run_stops_it_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    monkeypatch.setattr(batchcopy, "BATCH_FILES", 50)  # batches in flight on both workers
    items = make_sources(tmp_path / "src", [3000] * 600)
    os.unlink(items[450][0])  # a source vanishes
    with pytest.raises(FileNotFoundError, match="No such file"):
        run(items, tmp_path / "dst")
    assert leftovers(tmp_path / "dst") == []
    assert_named_files_verified(tmp_path / "dst", items)
    assert copyworkers_of(os.getpid()) == []  # stopped and reaped


def test_a_damaged_source_is_refused(tmp_path):
    (path, digest, size), = make_sources(tmp_path / "src", [4096])
    with pytest.raises(copyfile.PrimaryDamaged):
        write_copy(path, str(tmp_path / "copy"), "0" * 40, "SHA1-160", durable=False)
    assert not os.path.lexists(tmp_path / ("copy" + TMP_SUFFIX))
    with pytest.raises(copyfile.PrimaryDamaged, match="does not match its recorded"):
        run([(path, "0" * 40, size)], tmp_path / "dst")
    assert os.listdir(tmp_path / "dst") == []


def test_a_batch_whose_flush_fails_is_an_error_of_its_own(tmp_path, monkeypatch):
    items = make_sources(tmp_path / "src", [100] * 5)
    (tmp_path / "dst").mkdir()

    def failing(pendings):
        raise OSError(5, "Input/output error", str(tmp_path / "dst"))

    monkeypatch.setattr(copyworker, "make_durable", failing)
    answer = run_batch(Batch([job_for(tmp_path / "dst")(i) for i in items], False))
    assert answer.outcomes == [None] * 5
    error = exception(answer.error)
    assert type(error) is OSError and error.errno == 5 and str(error) == (
        f"[Errno 5] Input/output error: '{tmp_path / 'dst'}'")
    assert os.listdir(tmp_path / "dst") == []


def test_errors_cross_the_pipe_with_their_class_and_message():
    for exc in (FileNotFoundError(2, "No such file or directory", "/x/y"),
                OSError(28, "No space left on device"), OSError("plain"),
                CopyCorrupt("a: read back b"), copyfile.SourceChanged("s changed"),
                copyfile.PrimaryDamaged("p"), CopyError("c")):
        back = exception(copyworker.error_of(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        if isinstance(exc, OSError):
            assert (back.errno, back.strerror, back.filename) == (
                exc.errno, exc.strerror, exc.filename)


def test_a_worker_killed_mid_batch_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(batchcopy, "BATCH_FILES", 10)
    items = make_sources(tmp_path / "src", [20000] * 25)
    fifo = items[15][0]  # its copy waits for a writer that never comes: mid-batch
    os.unlink(fifo)
    os.mkfifo(fifo)
    dest = tmp_path / "dst"
    dest.mkdir()
    job_of = job_for(dest)

    def job(item):  # "large": not asked ahead (that would wait on the FIFO already)
        return job_of(item)._replace(size=copyworker.LARGE_FILE) if item[0] == fifo \
            else job_of(item)

    killed = []

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the first batch is done, and the
            names = os.listdir(dest)         # second's first 5 files are written
            if len(leftovers(dest)) == 5 and len(names) == 15:
                break
            time.sleep(0.01)
        for pid in copyworkers_of(os.getpid()):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=killer)
    thread.start()
    done = []
    try:
        with pytest.raises(CopyError, match=r"copy worker \(pid \d+\) died \(killed by "
                                            r"SIGKILL\) with 15 file\(s\) in hand"):
            with closing(copy_in_processes(items, job, workers=1)) as copies:
                for item, outcome in copies:
                    done.append(outcome)
    finally:
        thread.join()
    assert len(killed) == 1
    assert len(done) == 10 and all(isinstance(o, Done) for o in done)
    # Killed: its temporary files remain (never trusted); whatever has its final name
    # is the first, whole batch, verified.
    named = [n for n in os.listdir(dest) if not n.endswith(TMP_SUFFIX)]
    assert len(named) == 10
    assert_named_files_verified(dest, items)


def test_a_worker_that_fails_says_why(tmp_path):
    (path, digest, size), = make_sources(tmp_path / "src", [100])
    broken = Job(None, str(tmp_path / "x"))  # a bug in the parent: no sources at all
    with pytest.raises(CopyError, match=r"died \(exit status 1\) with 1 file\(s\) in "
                                        r"hand: .*TypeError: 'NoneType' object is not "
                                        r"iterable"):
        with closing(copy_in_processes([1], lambda item: broken)) as copies:
            list(copies)
    assert copyworkers_of(os.getpid()) == []


def test_one_batch_starts_one_worker(tmp_path):
    items = make_sources(tmp_path / "src", [100] * 3)
    (tmp_path / "dst").mkdir()
    seen = []
    with closing(copy_in_processes(items, job_for(tmp_path / "dst"), workers=4)) as copies:
        for item, outcome in copies:
            seen.append(copyworkers_of(os.getpid()))
    assert len(seen) == 3 and all(len(pids) == 1 for pids in seen), seen


PARENT = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-m", "omero_storagemanager.engine.copyworker",
                           str(__import__("os").getpid())], stdin=subprocess.PIPE)
print(worker.pid, flush=True)
time.sleep(600)
"""


def test_a_worker_dies_with_its_parent(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE,
                              cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        worker = int(parent.stdout.readline())
        time.sleep(0.5)  # the worker is up, waiting for a batch
        assert not gone(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while not gone(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(worker), "the copy worker outlived its parent"
    finally:
        parent.kill()
        parent.wait()


def test_a_worker_whose_parent_is_already_gone_exits_at_once():
    not_its_parent = os.getppid()  # as if its parent had died before it started
    proc = subprocess.run([sys.executable, "-m", "omero_storagemanager.engine.copyworker",
                           str(not_its_parent)], input=b"", capture_output=True, timeout=60)
    assert proc.returncode != 0 and b"parent process is gone" in proc.stderr
    ours = subprocess.run([sys.executable, "-c",
                           "import os, subprocess, sys; sys.exit(subprocess.run("
                           "[sys.executable, '-m', 'omero_storagemanager.engine.copyworker',"
                           " str(os.getpid())], input=b'').returncode)"], timeout=60)
    assert ours.returncode == 0  # its real parent: the end of its input ends it
