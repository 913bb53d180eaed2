"""A large file's copy as one pipeline: written, flushed and read back window by window.

A verified copy of a large file done in phases (read and write all of it, fsync, drop
it from the page cache, read all of it back) leaves the disk idle while the CPU hashes
and the CPU idle while the disk flushes: for a 256 MiB file about a third of its time.
Here the copy is cut into windows of WINDOW bytes. While the source's window k is read,
hashed and written,

    window k-1   is being written to the disk (started with sync_file_range, no wait),
    window k-LAG has reached the disk (waited for), is dropped from the page cache and
                 asked back from the disk (posix_fadvise WILLNEED, no wait),
    window k-LAG-1 is read back (the disk's bytes, asked for a window ago) and hashed.

At the end an fsync makes the whole file (and its metadata) durable, then the windows
not yet read back are. So the invariant of copyfile.py holds unchanged: every byte is
read back from the disk after it was written there, and the file is renamed only after
the fsync and the comparison (seal_copy). Why the read-back may start before the fsync:
sync_file_range's wait returns once the window's pages are written to the device and
clean, so dropping them and reading again reads what the device holds, as a read after
the fsync would; the fsync adds the device's cache flush and the file's metadata, and
comes before anything is trusted.

Linux only (sync_file_range); elsewhere copyfile.write_copy's phases are used.
"""
import ctypes
import errno
import os

from .hashing import CHUNK

# A multiple of the page cache's largest folio (2 MiB on x86-64), windows aligned to it:
# a folio that straddles two windows cannot be dropped with one of them, and the
# read-back would then find the cached bytes instead of the disk's.
WINDOW = 8 << 20
LAG = 2  # windows between starting a window's writeback and waiting for it
_WRITE = 2  # linux/fs.h SYNC_FILE_RANGE_WRITE
_WAIT_ALL = 1 | 2 | 4  # WAIT_BEFORE | WRITE | WAIT_AFTER

try:
    _sync_file_range = ctypes.CDLL(None, use_errno=True).sync_file_range
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                 ctypes.c_uint]
    _sync_file_range.restype = ctypes.c_int
except (OSError, AttributeError):
    _sync_file_range = None

AVAILABLE = _sync_file_range is not None and hasattr(os, "posix_fadvise")


# A file system that does not do sync_file_range says so with one of these: the copy
# then goes on without windows (flushed by the fsync at the end, then read back).
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ESPIPE}


class _Unsupported(Exception):
    pass


def _range_sync(fd, offset, length, flags, name):
    if _sync_file_range(fd, offset, length, flags) != 0:
        code = ctypes.get_errno()
        if code in _UNSUPPORTED:
            raise _Unsupported(code)
        raise OSError(code, os.strerror(code), name)  # EIO, ENOSPC: the copy fails


class StreamedWriter:
    """The sink of copyfile._read_into_hashers for one large copy: `write` (copyfile's
    writer of the temporary file `fd`, opened read-write) writes each chunk; this
    drives the windows above and reads the copy back into `back` (a hasher). finish()
    fsyncs and completes the read-back. src: the source's descriptor, whose next
    window is asked ahead."""

    def __init__(self, fd, name, write, back, src=None):
        self.fd, self.name, self.write, self.back, self.src = fd, name, write, back, src
        self.written = 0  # bytes written
        self.started = 0  # windows whose writeback was started
        self.asked = 0  # windows waited for, dropped and asked back from the disk
        self.hashed = 0  # bytes read back and hashed
        self.windowed = True  # False once the file system refused sync_file_range
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)

    def __call__(self, chunk):
        self.write(chunk)
        self.written += len(chunk)
        while self.windowed and self.written >= (self.started + 1) * WINDOW:
            try:
                self._window_full()
            except _Unsupported:
                self.windowed = False

    def _window_full(self):
        k = self.started
        _range_sync(self.fd, k * WINDOW, WINDOW, _WRITE, self.name)
        self.started += 1
        if self.src is not None:
            os.posix_fadvise(self.src, (k + 2) * WINDOW, WINDOW, os.POSIX_FADV_WILLNEED)
        if k - LAG >= 0:
            self._ask_back(k - LAG, wait=True)
        if k - LAG - 1 >= 0:
            self._hash_back((k - LAG) * WINDOW)

    def _ask_back(self, k, wait):
        """Window k (already on the disk when wait is False) dropped and asked back."""
        if wait:
            _range_sync(self.fd, k * WINDOW, WINDOW, _WAIT_ALL, self.name)
        os.posix_fadvise(self.fd, k * WINDOW, WINDOW, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(self.fd, k * WINDOW, WINDOW, os.POSIX_FADV_WILLNEED)
        self.asked = k + 1

    def _hash_back(self, upto):
        """Read the copy back from self.hashed up to byte `upto` and hash it."""
        fd, view, back = self.fd, self.view, self.back
        start = self.hashed
        while self.hashed < upto:
            n = os.preadv(fd, [self.buf if upto - self.hashed >= CHUNK
                               else view[:upto - self.hashed]], self.hashed)
            if not n:
                return  # shorter than written: the comparison will say so
            back.update(view[:n])
            self.hashed += n
        if self.hashed > start:  # (a length of 0 would mean "to the end of the file")
            # Read and checked: leave the page cache to other files.
            os.posix_fadvise(fd, start, self.hashed - start, os.POSIX_FADV_DONTNEED)

    def finish(self):
        """fsync the copy, then read back what is left. Returns the read-back digest."""
        os.fsync(self.fd)
        windows = -(-self.written // WINDOW)
        os.posix_fadvise(self.fd, self.asked * WINDOW, 0, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(self.fd, self.hashed, 0, os.POSIX_FADV_WILLNEED)
        self.asked = windows
        self._hash_back(self.written)  # a copy shorter than written hashes differently
        return self.back.hexdigest()
