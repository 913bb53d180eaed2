"""engine/streamcopy.py: a large file's verified copy as one pipeline (written, flushed
and read back window by window), on real files on the machine's disk.

The window is made as small as it may be (2 MiB, the page cache's largest folio on
x86-64: see streamcopy.WINDOW) so that files of a few MiB cross several windows."""
import ctypes
import errno
import hashlib
import os
import subprocess
import sys

import pytest

from omero_storagemanager.engine import copyfile, streamcopy
from omero_storagemanager.engine.copyfile import (TMP_SUFFIX, CopyCorrupt, SourceChanged,
                                                  copy_verified, seal_copy, write_copy)

SMALL_WINDOW = 2 << 20


@pytest.fixture(autouse=True)
def small_windows(monkeypatch):
    if not streamcopy.AVAILABLE:
        pytest.fail("the streamed copy needs Linux's sync_file_range and posix_fadvise "
                    "(C library symbol sync_file_range not found)")
    monkeypatch.setattr(streamcopy, "WINDOW", SMALL_WINDOW)


def make_file(path, size):
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha1(data).hexdigest()


@pytest.mark.parametrize("size", [SMALL_WINDOW, 3 * SMALL_WINDOW + 12345, 12 * SMALL_WINDOW,
                                  (9 << 20) + 1])
def test_a_streamed_copy_is_identical_and_read_back(tmp_path, size):
    source, target = tmp_path / "source ü", tmp_path / "copy"
    digest = make_file(source, size)
    os.chmod(source, 0o640)
    pending = write_copy(str(source), str(target), digest, "SHA1-160")
    assert pending.back_sha1 == digest and pending.durable and pending.reread
    assert os.path.exists(str(target) + TMP_SUFFIX) and not target.exists()
    result = seal_copy(pending)
    assert result.sha1 == digest and result.size == size
    assert target.read_bytes() == source.read_bytes()
    assert os.stat(target).st_mode & 0o7777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["copy", "source ü"]


def test_below_one_window_the_copy_is_read_back_after_its_fsync(tmp_path, monkeypatch):
    """Not streamed: write_copy fsyncs the temporary file itself, and seal_copy reads
    it back from the disk only after that (both recorded, in this process, in order)."""
    source, target = tmp_path / "source", tmp_path / "copy"
    digest = make_file(source, SMALL_WINDOW - 1)
    src, tmp = os.path.realpath(source), os.path.realpath(target) + TMP_SUFFIX
    events = []  # (what, the file's path), in the order they happen
    fsync, read_into_hashers = os.fsync, copyfile._read_into_hashers

    def named(fd):
        return os.readlink(f"/proc/self/fd/{fd}")

    def recording_fsync(fd):
        events.append(("fsync", named(fd)))
        return fsync(fd)

    def recording_read(fd, *args, **kwargs):  # every read of a whole file hashes it
        events.append(("read", named(fd)))
        return read_into_hashers(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(copyfile, "_read_into_hashers", recording_read)
    pending = write_copy(str(source), str(target), digest, "SHA1-160")
    assert pending.back_sha1 is None and not pending.reread and pending.durable
    # The source read once (written on the way), then the copy made durable.
    assert events == [("read", src), ("fsync", tmp)]
    assert seal_copy(pending).sha1 == digest
    # Read back from the disk (its temporary file) only after its fsync.
    assert events == [("read", src), ("fsync", tmp), ("read", tmp)]
    assert target.read_bytes() == source.read_bytes()


def test_unsynced_batch_copies_are_not_streamed(tmp_path):
    source = tmp_path / "source"
    digest = make_file(source, 10 * SMALL_WINDOW)
    pending = write_copy(str(source), str(tmp_path / "copy"), digest, "SHA1-160",
                         durable=False)
    assert pending.back_sha1 is None and not pending.durable


def test_a_window_that_reads_back_wrong_is_caught_and_the_copy_never_named(
        tmp_path, monkeypatch):
    """The disk returns other bytes than were written, in window 5 of 10: stood in for
    by changing the window's bytes after it was written out, before it is read back."""
    source, target = tmp_path / "source", tmp_path / "copy"
    digest = make_file(source, 10 * SMALL_WINDOW)
    ask_back = streamcopy.StreamedWriter._ask_back

    def damaged(self, k, wait):
        ask_back(self, k, wait)
        if k == 5:
            os.pwrite(self.fd, b"X", k * SMALL_WINDOW + 100)

    monkeypatch.setattr(streamcopy.StreamedWriter, "_ask_back", damaged)
    pending = write_copy(str(source), str(target), digest, "SHA1-160")
    assert pending.sha1 == digest and pending.back_sha1 != digest
    with pytest.raises(CopyCorrupt, match="read back"):
        seal_copy(pending)
    assert os.listdir(tmp_path) == ["source"]


def test_damage_in_the_last_windows_is_caught_too(tmp_path, monkeypatch):
    """The windows read back after the final fsync (the last LAG + 1) are checked."""
    source, target = tmp_path / "source", tmp_path / "copy"
    size = 10 * SMALL_WINDOW + 7
    digest = make_file(source, size)
    finish = streamcopy.StreamedWriter.finish

    def damaged(self):
        os.pwrite(self.fd, b"X", size - 3)
        return finish(self)

    monkeypatch.setattr(streamcopy.StreamedWriter, "finish", damaged)
    with pytest.raises(CopyCorrupt):
        copy_verified(str(source), str(target), digest, "SHA1-160")
    assert os.listdir(tmp_path) == ["source"]


def test_a_large_source_that_changes_while_copied_is_refused(tmp_path, monkeypatch):
    source, target = tmp_path / "source", tmp_path / "copy"
    digest = make_file(source, 8 * SMALL_WINDOW)
    window_full = streamcopy.StreamedWriter._window_full

    def appending(self):
        window_full(self)
        if self.started == 3:
            with open(source, "ab") as f:
                f.write(b"more")

    monkeypatch.setattr(streamcopy.StreamedWriter, "_window_full", appending)
    with pytest.raises(SourceChanged):
        write_copy(str(source), str(target), digest, "SHA1-160")
    assert os.listdir(tmp_path) == ["source"]


def test_the_read_back_comes_from_the_disk(tmp_path):
    """What the process read from the block device (/proc/self/io read_bytes): the
    source, dropped from the cache first, and the copy again, each in full."""
    source = tmp_path / "source"
    size = 16 << 20
    digest = make_file(source, size)
    fd = os.open(source, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    with open("/proc/self/io") as f:
        before = int(dict(line.split(": ") for line in f.read().splitlines())["read_bytes"])
    pending = write_copy(str(source), str(tmp_path / "copy"), digest, "SHA1-160")
    with open("/proc/self/io") as f:
        after = int(dict(line.split(": ") for line in f.read().splitlines())["read_bytes"])
    if after - before == 0:
        pytest.fail(f"{tmp_path} reads nothing from a block device (a tmpfs?): run the "
                    "tests with a TMPDIR on a real disk")
    assert after - before >= 2 * size * 0.95, (before, after)
    assert seal_copy(pending).sha1 == digest


def test_a_file_system_without_sync_file_range_still_gets_a_verified_copy(
        tmp_path, monkeypatch):
    source, target = tmp_path / "source", tmp_path / "copy"
    digest = make_file(source, 6 * SMALL_WINDOW + 5)
    calls = []

    def refused(fd, offset, length, flags):
        calls.append(offset)
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(streamcopy, "_sync_file_range", refused)
    pending = write_copy(str(source), str(target), digest, "SHA1-160")
    assert calls == [0]  # tried once, then the copy went on without windows
    assert pending.back_sha1 == digest
    assert seal_copy(pending).sha1 == digest and target.read_bytes() == source.read_bytes()


def test_a_write_error_from_sync_file_range_fails_the_copy_and_leaves_nothing(
        tmp_path, monkeypatch):
    source, target = tmp_path / "source", tmp_path / "copy"
    digest = make_file(source, 6 * SMALL_WINDOW)

    def failing(fd, offset, length, flags):
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(streamcopy, "_sync_file_range", failing)
    with pytest.raises(OSError) as raised:
        write_copy(str(source), str(target), digest, "SHA1-160")
    assert raised.value.errno == errno.EIO
    assert os.listdir(tmp_path) == ["source"]


KILLED_COPY = """
import sys
from omero_storagemanager.engine import copyfile, streamcopy
streamcopy.WINDOW = 2 << 20
window_full = streamcopy.StreamedWriter._window_full
def announcing(self):
    window_full(self)
    if self.started == 4:
        print("inside", flush=True)
        sys.stdin.read()  # killed here, half-way through the file
streamcopy.StreamedWriter._window_full = announcing
copyfile.write_copy(sys.argv[1], sys.argv[2])
"""


def test_a_copy_killed_half_way_leaves_only_a_temporary_file_that_a_rerun_replaces(
        tmp_path):
    source, target = tmp_path / "source", tmp_path / "copy"
    digest = make_file(source, 10 * SMALL_WINDOW)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_COPY, str(source), str(target)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"inside\n"
    finally:
        proc.kill()
        proc.wait()
    assert sorted(os.listdir(tmp_path)) == ["copy" + TMP_SUFFIX, "source"]
    assert os.path.getsize(str(target) + TMP_SUFFIX) < 10 * SMALL_WINDOW
    pending = write_copy(str(source), str(target), digest, "SHA1-160")
    assert seal_copy(pending).sha1 == digest and target.read_bytes() == source.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["copy", "source"]
