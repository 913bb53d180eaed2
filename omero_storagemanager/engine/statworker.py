"""A stat/verify worker process: the per-file half of a bulk scan (engine/bulk.py).

A million files is a million stat calls (and, to verify, a million hashes). Python
threads share one interpreter lock, so the per-file work runs here, in separate
processes, one per core: `python -m omero_storagemanager.engine.statworker`. A plain
subprocess, not multiprocessing: django-q2 runs jobs in daemonic processes, which may
not have multiprocessing children.

Input (stdin): rows in PostgreSQL's COPY text format, as bulk.rows_sql produces them,
tab separated:

    unit type, unit id, kind, folder, name, file id, OMERO size, hash, algorithm

`folder` is OMERO's path of the file, relative to the managed repository ('' for the
repository itself; a "/" at either end means nothing), and `name` the file's name in it
(a leading "/" means nothing). For files below the data dir `folder` is \\N: `name`
is then the path below the data dir (pyramids), or \\N too where OMERO derives the path
from the id (Files/, Pixels/, Thumbnails/). Folder and name come
apart, as OMERO stores them, because each file is stat'ed by name in its folder, which
is opened once for all its files (rows come folder by folder, a fileset at a time):
the kernel then walks one path component per file, not the whole path, and the
interpreter joins no path (together a third less time per file, measured). In stat
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

try:
    from ._statrows import stat_rows
except ImportError:  # not compiled (no C compiler at install): the Python loop, slower
    stat_rows = None

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


_S_IFMT, _S_IFLNK = 0o170000, stat.S_IFLNK
_PYRAMID_KINDS = (b"pyramid", b"pyramid_lock")
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY


def check_rows(lines, managed, data, verify, report=None):
    """Stat (and hash) the files of an iterable of COPY rows; returns (units, problems)."""
    units, problems = {}, {}
    _check_lines(lines, managed, data, verify, report, units, problems)
    return units, problems


def check_stream(read, managed, data, report=None):
    """Stat mode through the C loop (engine/_statrows.c): check_rows' result for the
    rows that `read(size)` returns, read in blocks of whole rows.

    The C loop counts the rows whose file is there with OMERO's size, in runs per
    unit, and hands every other row back; those go through check_rows' loop, which
    alone says what a problem is. Figures are sums and maxima, so the order in which
    the two loops count a unit's rows does not matter."""
    units, problems = {}, {}
    managed, data = _slashed(managed), _slashed(data)
    carry = b""
    while True:
        chunk = read(CHUNK)
        block = carry + chunk if carry else chunk
        if not block:
            break
        end = block.rfind(b"\n") + 1 if chunk else len(block)  # the last row may lack "\n"
        runs, rest, rows, row_bytes = stat_rows(block, end, managed, data)
        _add_runs(units, runs)
        if report is not None and rows:
            report(rows, row_bytes)
        if rest:
            _check_lines(rest, managed, data, False, report, units, problems)
        carry = block[end:]
    return units, problems


def _add_runs(units, runs):
    for unit_type, unit_id, *counts, newest, accessed in runs:
        u = units.get((unit_type, unit_id))
        if u is None:
            u = units[(unit_type, unit_id)] = [0] * 10 + [None, None]
        for index, count in zip(_RUN_FIELDS, counts):
            u[index] += count
        if newest is not None:
            if u[NEWEST] is None or newest > u[NEWEST]:
                u[NEWEST] = newest
            if u[ACCESSED] is None or accessed > u[ACCESSED]:
                u[ACCESSED] = accessed


# The counts of a run of _statrows.stat_rows, in its order.
_RUN_FIELDS = (FILES, BYTES, UNHASHED, SYMLINKS, PYRAMIDS, THUMBS, THUMB_BYTES)


def _slashed(folder):
    return folder.rstrip(b"/") + b"/"


def _check_lines(lines, managed, data, verify, report, units, problems):
    """check_rows' loop: adds the rows' figures and problems to units and problems.

    This loop runs a million times a scan, so the common case (a file in the same
    folder as the row before, of the same unit) is kept inline and short: the folder is
    opened once for its run of rows and each file stat'ed by name in it (dir_fd), and
    a unit's figures are looked up only when the unit changes."""
    managed, data = _slashed(managed), _slashed(data)
    lstat, stat_, is_link, os_open, os_close = os.lstat, os.stat, stat.S_ISLNK, os.open, os.close
    verifier = Verifier() if verify else None
    folder_now, fd = None, None  # the folder of the rows, and its descriptor (None: cannot)
    last_type = last_id = u = None
    seen = seen_bytes = 0
    try:
        for line in lines:
            if seen >= PROGRESS_EVERY and report is not None:
                report(seen, seen_bytes)
                seen = seen_bytes = 0
            seen += 1
            if b"\\" in line:
                fields = [f if f == NULL else unescape(f)
                          for f in line.rstrip(b"\n").split(b"\t")]
            else:
                fields = line.rstrip(b"\n").split(b"\t")
            unit_type, unit_id, kind, folder, name, ident, size, digest, hasher = fields
            if unit_id != last_id or unit_type != last_type:
                u = units.get((unit_type, unit_id))
                if u is None:
                    u = units[(unit_type, unit_id)] = [0] * 10 + [None, None]
                last_type, last_id = unit_type, unit_id
            link = False
            if folder != NULL:
                path = None  # joined only when needed (a problem, a hash)
                if name[:1] == b"/":  # else stat by name would ignore dir_fd
                    name = name.lstrip(b"/")
                if folder != folder_now:
                    if fd is not None:
                        os_close(fd)
                    folder_now = folder
                    try:  # a "/" more at either end of folder changes nothing here
                        fd = os_open(managed + folder, _DIRECTORY)
                    except OSError:
                        fd = None  # every file in it is missing
                if fd is None:
                    st = None
                else:
                    try:
                        st = lstat(name, dir_fd=fd)
                        if st.st_mode & _S_IFMT == _S_IFLNK:  # in-place import: the
                            link = True                       # data is the target's
                            st = stat_(name, dir_fd=fd)
                    except OSError:
                        st = None
            else:
                if kind == b"thumbnail":
                    path = data + b"Thumbnails/" + numbered(ident)
                elif kind == b"pixels":
                    path = data + b"Pixels/" + numbered(ident)
                elif name != NULL:  # a pyramid: its path below the data dir
                    path = data + name
                else:
                    path = data + b"Files/" + numbered(ident)
                try:
                    st = lstat(path)
                    if is_link(st.st_mode):
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
            if link:
                u[SYMLINKS] += 1
            if kind in _PYRAMID_KINDS:
                u[PYRAMIDS] += 1
            if st is None:
                u[MISSING] += 1
                problems.setdefault((unit_type, unit_id), []).append(
                    {"path": os.fsdecode(path or _join(managed, folder, name)),
                     "problem": "missing"})
                continue
            n = st.st_size
            u[BYTES] += n
            seen_bytes += n
            if size != NULL and n != int(size):
                problems.setdefault((unit_type, unit_id), []).append({
                    "path": os.fsdecode(path or _join(managed, folder, name)),
                    "problem": "size mismatch", "omero_size": int(size), "disk_size": n})
                u[MISMATCHED] += 1
            t = st.st_mtime
            if u[NEWEST] is None or t > u[NEWEST]:
                u[NEWEST] = t
            t = st.st_atime
            if u[ACCESSED] is None or t > u[ACCESSED]:
                u[ACCESSED] = t
            if verifier is not None and digest != NULL:
                path = path or _join(managed, folder, name)
                result = verifier.check(path, hasher.decode(), digest.decode())
                if result != "ok":
                    u[CHECKSUM_MISMATCHES] += result == "mismatch"
                    problems.setdefault((unit_type, unit_id), []).append({
                        "path": os.fsdecode(path), "problem": f"checksum {result}",
                        "algorithm": None if hasher == NULL else hasher.decode()})
    finally:
        if fd is not None:
            os_close(fd)
    if report is not None and seen:
        report(seen, seen_bytes)


def _join(managed, folder, name):
    """The file's path, as the message of a problem names it (and a hash reads it):
    catalog/paths.py's, with no "/" doubled where the folder has one at an end."""
    folder = folder.strip(b"/")
    return managed + folder + b"/" + name if folder else managed + name


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    managed, data, verify = os.fsencode(argv[0]), os.fsencode(argv[1]), argv[2:] == ["verify"]

    def report(files, nbytes):
        sys.stderr.write(f"progress {files} {nbytes}\n")
        sys.stderr.flush()

    if verify or stat_rows is None:
        units, problems = check_rows(sys.stdin.buffer, managed, data, verify, report)
    else:
        stdin = sys.stdin.fileno()
        units, problems = check_stream(lambda size: os.read(stdin, size), managed, data,
                                       report)
    pickle.dump((units, problems), sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
