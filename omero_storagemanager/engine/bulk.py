"""Stat and verify every collection at once, each file touched once.

Scanning collection by collection would stat a shared fileset once per collection and
cost several queries per collection: ten thousand collections, a million files. Here
files are grouped in *units* that always move together and whose collections are known:

    ("f", fileset id)   fileset entries and import logs      -> collections of its images
    ("i", image id)     Pixels/ file, pyramid, OMERO 4 originals, thumbnails
                                                             -> collections of the image
    ("a", file id)      a file attachment                    -> collections it is linked to

One COPY statement streams every file with its unit, in PostgreSQL's text format, to
worker processes (engine/statworker.py, one per core) that stat (and in verify mode
hash) them and sum figures per unit; each unit's figures are then added to each
collection holding it. Pyramids are not in the database: one walk of Pixels/ finds
them (a lookup beside every image would be two system calls per image). The result
equals the per-collection path (engine/scan.py with keys), which the tests check.
"""
import os
import re
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import psycopg2

# The statements on OMERO's tables are the catalogue's (catalog/bulkrows.py).
from ..catalog.bulkrows import (add_image_holders, copy_rows, holders_of,  # noqa: F401
                                images_of_pixels, rows_sql)
from ..catalog.collections import format_key
from ..catalog.totals import Figures
from .statpool import WorkerPool
from .statworker import (ACCESSED, BYTES, CHECKSUM_MISMATCHES, FILES, MISMATCHED, MISSING,
                         NEWEST, PYRAMIDS, SYMLINKS, THUMB_BYTES, THUMBS, UNHASHED)


_PYRAMID_NAME = re.compile(r"^(\d+)_pyramid(\.pyr_lock)?$")


def pyramid_rows(conn, paths):
    """COPY rows of the pyramids under Pixels/ (names `<pixels id>_pyramid[.pyr_lock]`),
    each with its path below the data dir as its name and no folder."""
    found = defaultdict(list)
    for root, _dirs, names in os.walk(os.path.join(paths.data_dir, "Pixels")):
        for name in names:
            match = _PYRAMID_NAME.match(name)
            if match:
                rel = os.path.relpath(os.path.join(root, name), paths.data_dir)
                kind = "pyramid_lock" if match.group(2) else "pyramid"
                found[int(match.group(1))].append((kind, rel))
    if not found:
        return []
    image_of = images_of_pixels(conn, found)
    rows = []
    for pixels_id, files in sorted(found.items()):
        if pixels_id in image_of:
            for kind, rel in files:
                # No folder: the name is the path below the data dir (statworker.py).
                rows.append(b"\t".join([b"i", b"%d" % image_of[pixels_id], kind.encode(),
                                        b"\\N", _copy_escape(os.fsencode(rel)),
                                        b"%d" % pixels_id, b"\\N", b"\\N", b"\\N"]) + b"\n")
    return rows


def _copy_escape(value):
    return (value.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n")
            .replace(b"\r", b"\\r"))


def unit_figures(conn, paths, verify=False, include_attachments=True, workers=None,
                 progress=None):
    """({unit: figures}, {unit: problems}) of every unit of the repository with files of
    its own. A unit's figures are a list in statworker.FIELDS order (plain lists: a
    repository has a unit per fileset and per image, hundreds of thousands)."""
    processes = max(1, min(workers or os.cpu_count() or 1, os.cpu_count() or 1))
    pool = WorkerPool(paths, verify, processes, progress)
    try:
        copy_rows(conn, verify, include_attachments, pool)
        for row in pyramid_rows(conn, paths):
            pool.write(row)
        results = pool.finish()
    finally:
        pool.kill()
    units, problems = {}, {}
    for worker_units, worker_problems in results:
        for (unit_type, unit_id), values in worker_units.items():
            key = (unit_type.decode(), int(unit_id))
            mine = units.get(key)
            if mine is None:
                units[key] = values
            else:  # a unit split between two workers' pieces
                _merge(mine, values)
        for (unit_type, unit_id), found in worker_problems.items():
            problems.setdefault((unit_type.decode(), int(unit_id)), []).extend(found)
    return units, problems


def _merge(into, values):
    for i in range(NEWEST):
        into[i] += values[i]
    for i in (NEWEST, ACCESSED):
        if values[i] is not None and (into[i] is None or values[i] > into[i]):
            into[i] = values[i]


def _cancel_if(error, conn):
    """Cancel conn's running query when there is an error (conn may be gone already)."""
    if error is None or conn is None:
        return
    try:
        conn.cancel()
    except psycopg2.Error:
        pass  # closed already: nothing runs on it


class _Tally:
    """Progress counted by the thread that streams the files, handed to the real
    progress by the main thread (a job's progress writes to the database: it stays
    in the thread that owns the Django connection)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.files = self.bytes = 0

    def advance(self, items=0, files=0, nbytes=0):
        with self.lock:
            self.files += files
            self.bytes += nbytes

    def hand_to(self, progress):
        with self.lock:
            files, nbytes, self.files, self.bytes = self.files, self.bytes, 0, 0
        if files and progress is not None:
            progress.advance(0, files, nbytes)


def _stream_and_ask(conn, other, paths, verify, include_attachments, workers, progress,
                    meanwhile):
    """unit_figures on `conn` in a thread; meanwhile(other) and the holders on `other`
    here. The stream is most of the time and runs in the workers and the server; the
    rest (a sync of the collections, who holds what) fits inside it."""
    tally = _Tally()
    with ThreadPoolExecutor(1) as side:
        streaming = side.submit(unit_figures, conn, paths, verify, include_attachments,
                                workers, tally)
        # Either side failing stops the other: waiting for it could take forever (it
        # may wait on a lock) for a scan that has failed already.
        streaming.add_done_callback(lambda done: _cancel_if(done.exception(), other))
        try:
            if meanwhile is not None:
                meanwhile(other)
            holders, images = holders_of(other, include_attachments)
            while True:
                try:
                    units, problems = streaming.result(timeout=0.5)
                    break
                except TimeoutError:
                    tally.hand_to(progress)
        except BaseException as exc:
            _cancel_if(exc, conn)
            if isinstance(exc, psycopg2.extensions.QueryCanceledError) \
                    and streaming.done() and streaming.exception() is not None:
                raise streaming.exception()  # the cause; ours is only its cancel
            raise
    tally.hand_to(progress)
    return units, problems, holders, images


def _when(timestamp):
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)


def collection_figures_from_disk(conn, paths, verify=False, include_attachments=True,
                                 workers=None, progress=None, connect=None, meanwhile=None):
    """({(kind, id): Figures}, {key: problems}) of every collection, from the disk.

    connect: a factory of a second connection to the same OMERO database; given, the
    files stream on `conn` while meanwhile(second connection) (the scan syncs the
    collections there) and the question of who holds what run on the second one.
    Without it, all of it runs one after the other on `conn`."""
    if connect is None:
        if meanwhile is not None:
            meanwhile(conn)
        units, problems = unit_figures(conn, paths, verify, include_attachments, workers,
                                       progress)
        holders, images = holders_of(conn, include_attachments)
    else:
        other = connect()
        try:
            units, problems, holders, images = _stream_and_ask(
                conn, other, paths, verify, include_attachments, workers, progress,
                meanwhile)
        finally:
            other.close()
    add_image_holders(conn, units, holders)
    return _add_up(units, problems, holders, images, verify)


def _add_up(units, problems, holders, images, verify):
    """Each unit's figures added to each collection holding it.

    The units (a hundred thousand or more, each held by one collection or several) are
    first listed per collection, then each collection's lists are summed a column at a
    time: adding unit by unit into running sums cost three times as much, and this runs
    after the stream, on one core."""
    held = defaultdict(list)  # (kind, id) -> the worker's figures of its units
    shared = defaultdict(list)  # (kind, id) -> its units held by other collections too
    found = defaultdict(list)
    for unit_key, v in units.items():
        keys = holders.get(unit_key)
        if not keys:
            continue
        for key in keys:
            held[key].append(v)
        if len(keys) > 1:
            for key in keys:
                shared[key].append((unit_key, v))
        if unit_key in problems:
            for key in keys:
                found[format_key(*key)].extend(problems[unit_key])
    figures = {}
    for key in held.keys() | images.keys():
        columns = list(zip(*held[key])) if key in held else None
        if columns:
            sums = [sum(c) for c in columns[:NEWEST]]
            newest = max((t for t in columns[NEWEST] if t is not None), default=None)
            accessed = max((t for t in columns[ACCESSED] if t is not None), default=None)
        else:
            sums, newest, accessed = [0] * NEWEST, None, None
        others = shared.get(key, ())
        figures[key] = Figures(
            files=sums[FILES], bytes=sums[BYTES], images=images.get(key, 0),
            shared_bytes=sum(v[BYTES] for _, v in others),
            shared_filesets=sum(unit_key[0] == "f" for unit_key, _ in others),
            unhashed_files=sums[UNHASHED], thumbnails=sums[THUMBS],
            newest_file=_when(newest), thumbnail_bytes=sums[THUMB_BYTES],
            last_access=_when(accessed), missing_files=sums[MISSING],
            size_mismatches=sums[MISMATCHED], symlinks=sums[SYMLINKS],
            pyramids=sums[PYRAMIDS],
            checksum_mismatches=sums[CHECKSUM_MISMATCHES] if verify else None)
    return figures, dict(found)
