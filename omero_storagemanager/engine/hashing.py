"""Checksums in OMERO's algorithms, computed in one read pass."""
import hashlib
import os
import threading
import zlib

CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough for memory


_local = threading.local()


def read_buffer():
    """(bytearray, memoryview) of CHUNK bytes, one per thread, reused: allocating (and
    zero-filling) a fresh MiB for each of a million small files costs more than
    reading them."""
    try:
        return _local.buffer
    except AttributeError:
        buf = bytearray(CHUNK)
        _local.buffer = (buf, memoryview(buf))
        return _local.buffer


class _Adler32:
    def __init__(self):
        self.value = 1

    def update(self, data):
        self.value = zlib.adler32(data, self.value)

    def hexdigest(self):
        return "%08x" % self.value


class _Crc32:
    def __init__(self):
        self.value = 0

    def update(self, data):
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self):
        return "%08x" % self.value


class _FileSize:
    def __init__(self):
        self.value = 0

    def update(self, data):
        self.value += len(data)

    def hexdigest(self):
        return "%016x" % self.value


# checksumalgorithm.value -> a hasher factory. Murmur3 has no implementation in the
# standard library; files hashed with it are reported as not verifiable.
ALGORITHMS = {
    "SHA1-160": hashlib.sha1,
    "MD5-128": hashlib.md5,
    "Adler-32": _Adler32,
    "CRC-32": _Crc32,
    "File-Size-64": _FileSize,
}
DEFAULT = "SHA1-160"


class UnsupportedAlgorithm(ValueError):
    pass


def new_hasher(algorithm):
    try:
        return ALGORITHMS[algorithm]()
    except KeyError:
        raise UnsupportedAlgorithm(f"checksum algorithm {algorithm!r} is not supported") from None


def open_noatime_fd(path):
    """Open for reading without updating the file's access time where the kernel lets
    us (O_NOATIME needs the file's owner or root): reading a file to check it must not
    make it look recently used, or "last access" would lie to the admin. A raw file
    descriptor: no file object for each of a million small files."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        return os.open(path, os.O_RDONLY)


def open_noatime(path):
    """open_noatime_fd as an unbuffered binary file object."""
    return os.fdopen(open_noatime_fd(path), "rb", buffering=0)


def hash_file(path, algorithm=DEFAULT):
    """(hex digest, bytes read) of a file, read once in CHUNK-sized blocks."""
    hasher = new_hasher(algorithm)
    size = 0
    buf, view = read_buffer()
    with open_noatime(path) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            hasher.update(view[:n])
            size += n
    return hasher.hexdigest(), size
