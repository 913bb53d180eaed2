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
import pickle
import re
import subprocess
import sys
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import List, Optional

import psycopg2

from ..catalog.collections import format_key
from ..catalog.totals import ATTACHMENT_LINKS, COLLECTION_IMAGES, Figures
from .statworker import FIELDS

FLUSH_ROWS = 2000  # rows go to a worker in pieces of this many (about 300 KiB)

# The images of all collections, and their filesets, each computed once (MATERIALIZED)
# so that every branch below joins them by hash, never by a lookup per row. (Measured:
# filesets taken straight from the links are estimated so badly that the planner sorts
# a million rows on disk.)
_IMAGES = """imgs AS MATERIALIZED (
  SELECT dil.child AS image FROM datasetimagelink dil
    JOIN projectdatasetlink pdl ON pdl.child = dil.parent
  UNION
  SELECT ws.image FROM wellsample ws JOIN well w ON w.id = ws.well
    JOIN screenplatelink spl ON spl.child = w.plate),
fs AS MATERIALIZED (SELECT DISTINCT i.fileset FROM imgs JOIN image i ON i.id = imgs.image
                     WHERE i.fileset IS NOT NULL)"""
# The worker's row: unit type, unit id, kind, path relative to the managed repository
# (NULL where OMERO derives the path from the id: Files/, Pixels/, Thumbnails/), file
# id, OMERO's size, hash and algorithm. The path is joined as engine/scan.py does.
_REL = ("CASE WHEN o.repo IS NULL THEN NULL ELSE ltrim(o.path, '/') || CASE WHEN "
        "o.path = '' OR right(o.path, 1) = '/' THEN '' ELSE '/' END || o.name END")
_OF = f'{_REL}, o.id, o."size", o.hash, ca.value'
_OF_JOIN = "LEFT JOIN checksumalgorithm ca ON ca.id = o.hasher"
ROWS = f"""WITH {_IMAGES}
SELECT 'f', fe.fileset, 'fileset_entry', {_OF}
  FROM fs JOIN filesetentry fe ON fe.fileset = fs.fileset
  JOIN originalfile o ON o.id = fe.originalfile {_OF_JOIN}
UNION ALL
SELECT 'f', fjl.parent, 'import_log', {_OF}
  FROM fs JOIN filesetjoblink fjl ON fjl.parent = fs.fileset
  JOIN joboriginalfilelink jol ON jol.parent = fjl.child
  JOIN originalfile o ON o.id = jol.child {_OF_JOIN}
UNION ALL
SELECT 'i', p.image, 'original', {_OF}
  FROM imgs JOIN pixels p ON p.image = imgs.image
  JOIN pixelsoriginalfilemap pom ON pom.child = p.id
  JOIN originalfile o ON o.id = pom.parent {_OF_JOIN}
UNION ALL
SELECT 'i', p.image, 'pixels', NULL, p.id,
       div(p.sizex::numeric * p.sizey * p.sizez * p.sizec * p.sizet
           * coalesce(pt.bitsize, 8) + 7, 8)::bigint, NULL, NULL
  FROM imgs JOIN image i ON i.id = imgs.image JOIN pixels p ON p.image = i.id
  LEFT JOIN pixelstype pt ON pt.id = p.pixelstype
 WHERE i.fileset IS NULL
UNION ALL
SELECT 'i', p.image, 'thumbnail', NULL, t.id, NULL, NULL, NULL
  FROM imgs JOIN pixels p ON p.image = imgs.image JOIN thumbnail t ON t.pixels = p.id
"""
ATTACHMENT_ROWS = f"""
WITH ci AS ({COLLECTION_IMAGES}), att AS ({ATTACHMENT_LINKS})
SELECT 'a', o.id, 'attachment', {_OF}
  FROM (SELECT DISTINCT file FROM att) a JOIN originalfile o ON o.id = a.file {_OF_JOIN}
"""
# Pyramids found on disk, with the image of their pixels (only those of a collection).
PYRAMID_IMAGES = f"""WITH {_IMAGES}
SELECT p.id, p.image FROM pixels p JOIN imgs ON imgs.image = p.image WHERE p.id = ANY(%s)
"""
# Who holds each fileset, and each collection's image count, in one statement (the
# collections' images are computed once).
HOLDERS = f"""
WITH ci AS MATERIALIZED ({COLLECTION_IMAGES})
SELECT DISTINCT 'f', i.fileset, ci.kind, ci.cid, 0::bigint FROM ci JOIN image i ON i.id = ci.image
 WHERE i.fileset IS NOT NULL
UNION ALL
SELECT 'n', 0, ci.kind, ci.cid, count(*) FROM ci GROUP BY ci.kind, ci.cid
"""
# Only images with something on disk of their own are units; their holders are asked
# for by id once the units are known (most facilities' images are FS images: a fileset
# unit holds their data, and this query is not needed).
IMAGE_HOLDERS = f"SELECT image, kind, cid FROM ({COLLECTION_IMAGES}) ci WHERE image = ANY(%s)"
ATTACHMENT_HOLDERS = f"""
WITH ci AS ({COLLECTION_IMAGES}), att AS ({ATTACHMENT_LINKS})
SELECT file, kind, cid FROM att
"""
_PYRAMID_NAME = re.compile(r"^(\d+)_pyramid(\.pyr_lock)?$")


@dataclass
class UnitFigures:
    files: int = 0
    bytes: int = 0
    unhashed: int = 0
    missing: int = 0
    mismatched_sizes: int = 0
    symlinks: int = 0
    pyramids: int = 0
    thumbnails: int = 0
    thumbnail_bytes: int = 0
    checksum_mismatches: int = 0
    newest: Optional[float] = None
    accessed: Optional[float] = None
    problems: List[dict] = field(default_factory=list)


class StatWorkerFailed(RuntimeError):
    """A stat/verify worker process died or answered nonsense."""


class WorkerPool:
    """Stat worker processes fed with COPY rows; `write` is the COPY target.

    Rows go round robin in pieces of FLUSH_ROWS (a unit split over two workers is merged
    afterwards). Writes block when a worker's pipe is full, so memory stays flat
    whatever the number of files. Progress comes back on the workers' stderr."""

    def __init__(self, paths, verify, processes, progress=None):
        mode = ["verify"] if verify else []
        command = [sys.executable, "-m", "omero_storagemanager.engine.statworker",
                   paths.managed_dir, paths.data_dir] + mode
        self.procs = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE) for _ in range(processes)]
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
        proc = self.procs[self.next]
        self.next = (self.next + 1) % len(self.procs)
        try:
            proc.stdin.write(b"".join(self.pending))
            proc.stdin.flush()
        except BrokenPipeError:
            raise self._failure(self.procs.index(proc)) from None
        self.pending = []
        self.report()

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


def pyramid_rows(conn, paths):
    """COPY rows of the pyramids under Pixels/ (names `<pixels id>_pyramid[.pyr_lock]`)."""
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
    with conn.cursor() as cur:
        cur.execute(PYRAMID_IMAGES, (sorted(found),))
        image_of = dict(cur.fetchall())
    rows = []
    for pixels_id, files in sorted(found.items()):
        if pixels_id in image_of:
            for kind, rel in files:
                rows.append(b"\t".join([b"i", b"%d" % image_of[pixels_id], kind.encode(),
                                        _copy_escape(os.fsencode(rel)), b"%d" % pixels_id,
                                        b"\\N", b"\\N", b"\\N"]) + b"\n")
    return rows


def _copy_escape(value):
    return (value.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n")
            .replace(b"\r", b"\\r"))


def unit_figures(conn, paths, verify=False, include_attachments=True, workers=None,
                 progress=None):
    """{unit: UnitFigures} for every unit of the repository with files of its own."""
    processes = max(1, min(workers or os.cpu_count() or 1, os.cpu_count() or 1))
    pool = WorkerPool(paths, verify, processes, progress)
    try:
        with conn.cursor() as cur:
            cur.copy_expert(f"COPY ({ROWS}) TO STDOUT", pool)
            if include_attachments:
                cur.copy_expert(f"COPY ({ATTACHMENT_ROWS}) TO STDOUT", pool)
        for row in pyramid_rows(conn, paths):
            pool.write(row)
        results = pool.finish()
    finally:
        pool.kill()
    units = {}
    for worker_units, worker_problems in results:
        for (unit_type, unit_id), values in worker_units.items():
            key = (unit_type.decode(), int(unit_id))
            unit = UnitFigures(*values)
            unit.problems = worker_problems.get((unit_type, unit_id), [])
            if key in units:
                _merge(units[key], unit)
            else:
                units[key] = unit
    return units


def _merge(into, unit):
    for name in FIELDS[:10]:
        setattr(into, name, getattr(into, name) + getattr(unit, name))
    for name in ("newest", "accessed"):
        mine, theirs = getattr(into, name), getattr(unit, name)
        if theirs is not None and (mine is None or theirs > mine):
            setattr(into, name, theirs)
    into.problems.extend(unit.problems)


def holders_of(conn, include_attachments=True):
    """({unit: {(kind, collection id)}} of filesets and attachments, {(kind, id): images})."""
    holders = defaultdict(set)
    images = {}
    with conn.cursor() as cur:
        cur.execute(HOLDERS)
        for unit_type, unit_id, kind, cid, count in cur:
            if unit_type == "n":
                images[(kind, cid)] = count
            else:
                holders[(unit_type, unit_id)].add((kind, cid))
        if include_attachments:
            cur.execute(ATTACHMENT_HOLDERS)
            for file_id, kind, cid in cur:
                holders[("a", file_id)].add((kind, cid))
    return holders, images


def add_image_holders(conn, units, holders):
    image_units = sorted(uid for utype, uid in units if utype == "i")
    if image_units:
        with conn.cursor() as cur:
            cur.execute(IMAGE_HOLDERS, (image_units,))
            for image, kind, cid in cur:
                holders[("i", image)].add((kind, cid))


def _cancel_if(error, conn):
    """Cancel conn's running query when there is an error (conn may be gone already)."""
    if error is None or conn is None:
        return
    try:
        conn.cancel()
    except psycopg2.Error:
        pass  # closed already: nothing runs on it


def _when(timestamp):
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)


def collection_figures_from_disk(conn, paths, verify=False, include_attachments=True,
                                 workers=None, progress=None, connect=None):
    """({(kind, id): Figures}, {key: problems}) of every collection, from the disk.

    connect: a factory of a second connection to the same OMERO database; given, who
    holds what is asked on it while the files stream (PostgreSQL computes both at
    once, on two cores, instead of one after the other)."""
    other = connect() if connect is not None else None
    try:
        with ThreadPoolExecutor(1) as side:
            pending = (side.submit(holders_of, other, include_attachments)
                       if other is not None else None)
            if pending is not None:
                # Either query failing stops the other: waiting for it could take
                # forever (it may wait on a lock) for a scan that has failed already.
                pending.add_done_callback(lambda done: _cancel_if(done.exception(), conn))
            try:
                units = unit_figures(conn, paths, verify, include_attachments, workers,
                                     progress)
            except BaseException as exc:
                _cancel_if(exc, other)
                if isinstance(exc, psycopg2.extensions.QueryCanceledError) \
                        and pending is not None and pending.exception() is not None:
                    raise pending.exception()  # the cause; ours is only its cancel
                raise
            holders, images = (pending.result() if pending is not None
                               else holders_of(conn, include_attachments))
    finally:
        if other is not None:
            other.close()
    add_image_holders(conn, units, holders)
    figures = defaultdict(Figures)
    found = defaultdict(list)
    for unit_key, unit in units.items():
        keys = holders.get(unit_key, ())
        shared = len(keys) > 1
        for key in keys:
            f = figures[key]
            f.files += unit.files
            f.bytes += unit.bytes
            f.unhashed_files += unit.unhashed
            f.missing_files = (f.missing_files or 0) + unit.missing
            f.size_mismatches = (f.size_mismatches or 0) + unit.mismatched_sizes
            f.symlinks = (f.symlinks or 0) + unit.symlinks
            f.pyramids = (f.pyramids or 0) + unit.pyramids
            f.thumbnails += unit.thumbnails
            f.thumbnail_bytes = (f.thumbnail_bytes or 0) + unit.thumbnail_bytes
            f.checksum_mismatches = (f.checksum_mismatches or 0) + unit.checksum_mismatches
            if shared:
                f.shared_bytes += unit.bytes
                f.shared_filesets += unit_key[0] == "f"
            if unit.newest is not None:
                f.newest_file = max(filter(None, [f.newest_file, _when(unit.newest)]))
            if unit.accessed is not None:
                f.last_access = max(filter(None, [f.last_access, _when(unit.accessed)]))
            if unit.problems:
                found[format_key(*key)].extend(unit.problems)
    for key, count in images.items():
        figures[key].images = count
    for f in figures.values():
        for name in ("missing_files", "size_mismatches", "symlinks", "pyramids",
                     "thumbnail_bytes"):
            if getattr(f, name) is None:
                setattr(f, name, 0)
        if not verify:
            f.checksum_mismatches = None
    return dict(figures), dict(found)
