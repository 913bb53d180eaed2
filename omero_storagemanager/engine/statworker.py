"""A stat/verify worker process: the per-file half of a bulk scan (engine/bulk.py).

A million files is a million stat calls (and, to verify, a million hashes). Python
threads share one interpreter lock, so the per-file work runs here, in separate
processes, one per core: `python -m omero_storagemanager.engine.statworker`. A plain
subprocess, not multiprocessing: django-q2 runs jobs in daemonic processes, which may
not have multiprocessing children.

Input (stdin): rows in PostgreSQL's COPY text format, as bulk.rows_sql produces them,
tab separated:

    unit type, unit id, kind, path, file id, OMERO size, hash, algorithm

`path` is relative to the managed repository (or to the data dir for pyramids); \\N
for files whose path OMERO derives from an id (Files/, Pixels/, Thumbnails/). In stat
mode the hash is only an empty field (OMERO recorded one) or \\N (it did not), and the
algorithm \\N: bulk.rows_sql leaves out what only verify reads.
Output: one pickle on stdout at the end of the input, {unit: [figures...]} with the
fields of FIELDS, and {unit: [problems]}; progress lines ("progress FILES BYTES") on
stderr. A unit is (unit type, unit id) as bytes; the parent decodes them.

No Django here, and nothing that writes: files are opened read only, O_NOATIME where
the kernel allows, so a verify does not make the repository look recently used.
"""
import os
import pickle
import re
import stat
import sys

from ..catalog.paths import numbered as _numbered
from .hashing import ALGORITHMS

# Per unit: the order of the figures a worker returns.
FIELDS = ("files", "bytes", "unhashed", "missing", "mismatched_sizes", "symlinks",
          "pyramids", "thumbnails", "thumbnail_bytes", "checksum_mismatches",
          "newest", "accessed")
FILES, BYTES, UNHASHED, MISSING, MISMATCHED, SYMLINKS, PYRAMIDS, THUMBS, THUMB_BYTES, \
    CHECKSUM_MISMATCHES, NEWEST, ACCESSED = range(len(FIELDS))
NULL = b"\\N"
PROGRESS_EVERY = 20000
CHUNK = 1 << 20
_ESCAPES = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r", b"b": b"\b",
            b"f": b"\f", b"v": b"\v"}
_ESCAPE = re.compile(rb"\\(.)")


def unescape(field):
    """A COPY text field as it was in the database (odd names hold tabs, backslashes)."""
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), field)


def numbered(object_id):
    """Pixels/, Files/ and Thumbnails/ layout of catalog/paths.py, for a bytes id."""
    return _numbered(int(object_id)).encode()


class Verifier:
    """Hash files with OMERO's algorithms, reusing one buffer (a million small files
    must not cost a million 1 MiB allocations)."""

    def __init__(self):
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.noatime = getattr(os, "O_NOATIME", 0)

    def check(self, path, algorithm, expected):
        """'ok', 'mismatch', 'unsupported' or 'unreadable'."""
        factory = ALGORITHMS.get(algorithm)
        if factory is None:
            return "unsupported"
        hasher = factory()
        try:
            try:
                fd = os.open(path, os.O_RDONLY | self.noatime)
            except PermissionError:  # O_NOATIME needs the owner or root
                fd = os.open(path, os.O_RDONLY)
            try:
                readv, bufs, view = os.readv, [self.buf], self.view
                while True:
                    n = readv(fd, bufs)
                    if not n:
                        break
                    hasher.update(view[:n])
            finally:
                os.close(fd)
        except OSError:
            return "unreadable"
        return "ok" if hasher.hexdigest() == expected.lower() else "mismatch"


def check_rows(lines, managed, data, verify, report=None):
    """Stat (and hash) the files of an iterable of COPY rows; returns (units, problems).

    The common case, an original file stat'ed, is inlined: this loop runs a million
    times a scan."""
    units, problems = {}, {}
    managed, data = managed.rstrip(b"/") + b"/", data.rstrip(b"/") + b"/"
    lstat, stat_, is_link = os.lstat, os.stat, stat.S_ISLNK
    verifier = Verifier() if verify else None
    seen = seen_bytes = 0
    for line in lines:
        if seen >= PROGRESS_EVERY and report is not None:
            report(seen, seen_bytes)
            seen = seen_bytes = 0
        seen += 1
        if b"\\" in line:
            fields = [f if f == NULL else unescape(f) for f in line.rstrip(b"\n").split(b"\t")]
        else:
            fields = line.rstrip(b"\n").split(b"\t")
        unit_type, unit_id, kind, rel, ident, size, digest, hasher = fields
        key = (unit_type, unit_id)
        u = units.get(key)
        if u is None:
            u = units[key] = [0] * 10 + [None, None]
        if rel != NULL:
            path = (data if kind in (b"pyramid", b"pyramid_lock") else managed) + rel
        elif kind == b"thumbnail":
            path = data + b"Thumbnails/" + numbered(ident)
        elif kind == b"pixels":
            path = data + b"Pixels/" + numbered(ident)
        else:
            path = data + b"Files/" + numbered(ident)
        link = False
        try:
            st = lstat(path)
            if is_link(st.st_mode):  # an in-place import: the data is the target's
                link = True
                st = stat_(path)
        except OSError:
            st = None
        if kind == b"thumbnail":
            u[THUMBS] += 1
            if st is not None:
                u[THUMB_BYTES] += st.st_size
            continue
        u[FILES] += 1
        if digest == NULL:
            u[UNHASHED] += 1
        if kind in (b"pyramid", b"pyramid_lock"):
            u[PYRAMIDS] += 1
        if link:
            u[SYMLINKS] += 1
        if st is None:
            u[MISSING] += 1
            problems.setdefault(key, []).append({"path": os.fsdecode(path), "problem": "missing"})
            continue
        n = st.st_size
        u[BYTES] += n
        seen_bytes += n
        if size != NULL and n != int(size):
            problems.setdefault(key, []).append({
                "path": os.fsdecode(path), "problem": "size mismatch",
                "omero_size": int(size), "disk_size": n})
            u[MISMATCHED] += 1
        if u[NEWEST] is None or st.st_mtime > u[NEWEST]:
            u[NEWEST] = st.st_mtime
        if u[ACCESSED] is None or st.st_atime > u[ACCESSED]:
            u[ACCESSED] = st.st_atime
        if verifier is not None and digest != NULL:
            result = verifier.check(path, hasher.decode(), digest.decode())
            if result != "ok":
                u[CHECKSUM_MISMATCHES] += result == "mismatch"
                problems.setdefault(key, []).append({
                    "path": os.fsdecode(path), "problem": f"checksum {result}",
                    "algorithm": None if hasher == NULL else hasher.decode()})
    if report is not None and seen:
        report(seen, seen_bytes)
    return units, problems


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    managed, data, verify = os.fsencode(argv[0]), os.fsencode(argv[1]), argv[2:] == ["verify"]

    def report(files, nbytes):
        sys.stderr.write(f"progress {files} {nbytes}\n")
        sys.stderr.flush()

    units, problems = check_rows(sys.stdin.buffer, managed, data, verify, report)
    pickle.dump((units, problems), sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
