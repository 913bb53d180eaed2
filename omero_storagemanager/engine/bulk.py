"""Stat and verify every collection at once, each file touched once.

Scanning collection by collection would stat a shared fileset once per collection and
cost several queries per collection: ten thousand collections, a million files. Here
files are grouped in *units* that always move together and whose collections are known:

    ("f", fileset id)   fileset entries and import logs      -> collections of its images
    ("i", image id)     Pixels/ file, pyramid, OMERO 4 originals, thumbnails
                                                             -> collections of the image
    ("a", file id)      a file attachment                    -> collections it is linked to

One streamed query lists every file with its unit; worker threads stat (and in verify
mode hash) them, and each unit's figures are added to each collection holding it. The
result equals the per-collection path (engine/scan.py with keys), which the tests check.
"""
import os
import stat
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import List, Optional

from ..catalog.collections import format_key
from ..catalog.inventory import FileRecord
from ..catalog.totals import ATTACHMENT_LINKS, COLLECTION_IMAGES, Figures
from .disk import stat_record, verify_record

BATCH = 2000

_OF = ('o.path, o.name, o.repo, o.id, o."size", o.hash, ca.value')
_OF_JOIN = "LEFT JOIN checksumalgorithm ca ON ca.id = o.hasher"

# Every file of every collection, with its unit. Pixels rows carry the pixels id and
# their size from the dimensions; thumbnails their id.
FILES = f"""
WITH ci AS ({COLLECTION_IMAGES}),
images AS (SELECT DISTINCT image FROM ci),
-- Only filesets of images in some collection: orphaned images are nobody's collection.
filesets AS (SELECT DISTINCT i.fileset FROM images JOIN image i ON i.id = images.image
              WHERE i.fileset IS NOT NULL)
SELECT 'f', fe.fileset, 'fileset_entry', {_OF}
  FROM filesets JOIN filesetentry fe ON fe.fileset = filesets.fileset
  JOIN originalfile o ON o.id = fe.originalfile {_OF_JOIN}
UNION ALL
SELECT 'f', fjl.parent, 'import_log', {_OF}
  FROM filesets JOIN filesetjoblink fjl ON fjl.parent = filesets.fileset
  JOIN joboriginalfilelink jol ON jol.parent = fjl.child
  JOIN originalfile o ON o.id = jol.child {_OF_JOIN}
UNION ALL
SELECT 'i', p.image, 'original', {_OF}
  FROM images JOIN pixels p ON p.image = images.image
  JOIN pixelsoriginalfilemap pom ON pom.child = p.id
  JOIN originalfile o ON o.id = pom.parent {_OF_JOIN}
UNION ALL
SELECT 'i', p.image, CASE WHEN i.fileset IS NULL THEN 'pixels' ELSE 'pixels_fs' END,
       NULL, NULL, NULL, p.id,
       div(p.sizex::numeric * p.sizey * p.sizez * p.sizec * p.sizet
           * coalesce(pt.bitsize, 8) + 7, 8)::bigint, NULL, NULL
  FROM images JOIN image i ON i.id = images.image JOIN pixels p ON p.image = i.id
  LEFT JOIN pixelstype pt ON pt.id = p.pixelstype
UNION ALL
SELECT 'i', p.image, 'thumbnail', NULL, NULL, NULL, t.id, NULL, NULL, NULL
  FROM images JOIN pixels p ON p.image = images.image JOIN thumbnail t ON t.pixels = p.id
"""
ATTACHMENT_FILES = f"""
WITH ci AS ({COLLECTION_IMAGES}), att AS ({ATTACHMENT_LINKS})
SELECT 'a', o.id, 'attachment', {_OF}
  FROM (SELECT DISTINCT file FROM att) a JOIN originalfile o ON o.id = a.file {_OF_JOIN}
"""
HOLDERS = f"""
WITH ci AS ({COLLECTION_IMAGES})
SELECT DISTINCT 'f', i.fileset, ci.kind, ci.cid FROM ci JOIN image i ON i.id = ci.image
 WHERE i.fileset IS NOT NULL
UNION ALL
SELECT 'i', ci.image, ci.kind, ci.cid FROM ci
"""
ATTACHMENT_HOLDERS = f"""
WITH ci AS ({COLLECTION_IMAGES}), att AS ({ATTACHMENT_LINKS})
SELECT 'a', file, kind, cid FROM att
"""


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


def _records(row, paths):
    """FileRecords (kind, path) of one row of FILES; a pixels row also yields the
    pyramid and its lock when they exist on disk."""
    _, _, kind, path, name, repo, ident, size, digest, hasher = row
    if kind in ("pixels", "pixels_fs"):
        found = []
        if kind == "pixels":
            found.append(FileRecord(paths.pixels(ident), "pixels", size, pixels_id=ident))
        for extra, where in (("pyramid", paths.pyramid(ident)),
                             ("pyramid_lock", paths.pyramid_lock(ident))):
            if os.path.lexists(where):
                found.append(FileRecord(where, extra, None, pixels_id=ident))
        return found
    if kind == "thumbnail":
        return [FileRecord(paths.thumbnail(ident), "thumbnail", None)]
    where = paths.managed(path, name) if repo else paths.files(ident)
    return [FileRecord(where, kind, size, digest or None, hasher if digest else None,
                       originalfile_id=ident)]


def _check_batch(rows, paths, verify):
    """Worker: stat (and hash) the files of a batch of rows, summed per unit.

    Returns ({unit: UnitFigures}, files, bytes). The common case (an original file, no
    hashing) is inlined: a million of them must not cost a million objects."""
    units = {}
    managed = paths.managed_dir + os.sep
    lstat, is_link = os.lstat, stat.S_ISLNK
    for row in rows:
        key = (row[0], row[1])
        unit = units.get(key)
        if unit is None:
            unit = units[key] = UnitFigures()
        kind, path, name, repo, ident, size, digest = row[2:9]
        if verify or kind in ("pixels", "pixels_fs", "thumbnail"):
            for record in _records(row, paths):
                stat_record(record)
                result = verify_record(record) if verify and record.kind != "thumbnail" else None
                _add(unit, record, result)
            continue
        where = (managed + path.lstrip("/") + ("" if path.endswith("/") or not path else "/")
                 + name) if repo else paths.files(ident)
        unit.files += 1
        if not digest:
            unit.unhashed += 1
        try:
            st = lstat(where)
            if is_link(st.st_mode):
                unit.symlinks += 1
                st = os.stat(where)
        except OSError:
            unit.missing += 1
            unit.problems.append({"path": where, "problem": "missing"})
            continue
        unit.bytes += st.st_size
        if size is not None and st.st_size != size:
            unit.mismatched_sizes += 1
            unit.problems.append({"path": where, "problem": "size mismatch",
                                  "omero_size": size, "disk_size": st.st_size})
        if unit.newest is None or st.st_mtime > unit.newest:
            unit.newest = st.st_mtime
        if unit.accessed is None or st.st_atime > unit.accessed:
            unit.accessed = st.st_atime
    return units


def _add(unit, record, result):
    """Add one FileRecord (stat'ed, maybe hashed) to its unit: the general path."""
    if record.kind == "thumbnail":
        unit.thumbnails += 1
        unit.thumbnail_bytes += record.disk_size or 0
        return
    unit.files += 1
    unit.unhashed += not record.hash
    unit.pyramids += record.kind in ("pyramid", "pyramid_lock")
    unit.symlinks += bool(record.symlink_target)
    if record.exists is False:
        unit.missing += 1
        unit.problems.append({"path": record.path, "problem": "missing"})
    else:
        unit.bytes += record.disk_size or 0
        if record.size is not None and record.disk_size != record.size:
            unit.mismatched_sizes += 1
            unit.problems.append({"path": record.path, "problem": "size mismatch",
                                  "omero_size": record.size, "disk_size": record.disk_size})
        unit.newest = record.mtime if unit.newest is None else max(unit.newest, record.mtime)
        unit.accessed = record.atime if unit.accessed is None else max(unit.accessed, record.atime)
    if result == "mismatch":
        unit.checksum_mismatches += 1
    if result in ("mismatch", "unreadable", "unsupported"):
        unit.problems.append({"path": record.path, "problem": f"checksum {result}",
                              "algorithm": record.hasher})


def _merge(into, unit):
    for name in ("files", "bytes", "unhashed", "missing", "mismatched_sizes", "symlinks",
                 "pyramids", "thumbnails", "thumbnail_bytes", "checksum_mismatches"):
        setattr(into, name, getattr(into, name) + getattr(unit, name))
    for name in ("newest", "accessed"):
        mine, theirs = getattr(into, name), getattr(unit, name)
        if theirs is not None and (mine is None or theirs > mine):
            setattr(into, name, theirs)
    into.problems.extend(unit.problems)


def _stream(conn, query, size=BATCH):
    """Rows of a query in batches, through a server-side cursor (bounded memory).

    WITH HOLD because catalog connections are in autocommit mode."""
    with conn.cursor(name="storagemanager_bulk", withhold=True) as cur:
        cur.itersize = size
        cur.execute(query)
        while True:
            rows = cur.fetchmany(size)
            if not rows:
                return
            yield rows


def unit_figures(conn, paths, verify=False, include_attachments=True, workers=4,
                 progress=None):
    """{unit: UnitFigures} for every unit of the repository."""
    units = defaultdict(UnitFigures)
    queries = [FILES] + ([ATTACHMENT_FILES] if include_attachments else [])
    with ThreadPoolExecutor(workers) as pool:
        for query in queries:
            pending = []
            for rows in _stream(conn, query):
                pending.append(pool.submit(_check_batch, rows, paths, verify))
                if len(pending) >= workers * 2:  # bounded: memory stays flat
                    _collect(pending.pop(0), units, progress)
            for future in pending:
                _collect(future, units, progress)
    return units


def _collect(future, units, progress):
    files = nbytes = 0
    for key, unit in future.result().items():
        if key in units:
            _merge(units[key], unit)
        else:
            units[key] = unit
        files += unit.files
        nbytes += unit.bytes
    if progress:
        progress.advance(0, files, nbytes)


def _when(timestamp):
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)


def collection_figures_from_disk(conn, paths, verify=False, include_attachments=True,
                                 workers=4, progress=None):
    """({(kind, id): Figures}, {key: problems}) of every collection, from the disk."""
    holders = defaultdict(set)
    with conn.cursor() as cur:
        for query in [HOLDERS] + ([ATTACHMENT_HOLDERS] if include_attachments else []):
            cur.execute(query)
            for unit_type, unit_id, kind, cid in cur:
                holders[(unit_type, unit_id)].add((kind, cid))
    units = unit_figures(conn, paths, verify, include_attachments, workers, progress)
    figures = defaultdict(Figures)
    found = defaultdict(list)
    images = defaultdict(int)
    for (unit_type, unit_id), keys in holders.items():
        if unit_type == "i":
            for key in keys:
                images[key] += 1
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
