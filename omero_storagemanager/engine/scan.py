"""Scan: the exact storage inventory of Projects and Screens, and their figures, stored.

Modes:
  catalog  the OMERO database only (sizes as OMERO recorded them); all collections at
           once are aggregated in SQL (catalog/totals.py);
  stat     also stats every file: existence, size, times, symlinks, pyramids;
  verify   also hashes every file and compares it with OMERO's recorded checksum.

A scan never changes OMERO or any file. Its results go to the app's database: the
latest figures on each Collection, and one ScanResult per collection and scan.
"""
import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, NamedTuple

from django.db import connection, transaction

from ..catalog.collections import UnknownCollection, format_key
from ..catalog.inventory import InventoryReader
from ..catalog.db import without_parallel_workers
from ..catalog.totals import Figures, collection_figures, fileset_figures
from ..models import Collection, ScanResult
from .bulk import collection_figures_from_disk
from .disk import check_repository, stat_inventory, verify_record
from .figures import figures_from_inventory, problems
from .progress import NullProgress
from .sync import sync_collections

MODES = ("catalog", "stat", "verify")


@dataclass
class ScanReport:
    mode: str
    started: datetime
    finished: datetime = None
    collections: int = 0
    files: int = 0
    bytes: int = 0
    figures: Dict[str, Figures] = field(default_factory=dict)
    problems: Dict[str, List[dict]] = field(default_factory=dict)


def scan(conn, paths, mode="catalog", keys=None, include_attachments=True, progress=None,
         workers=4, connect=None, keep_filesets=None):
    """Scan the collections named by `keys` ((kind, id) pairs), or all of them.

    conn: a read-only connection to the OMERO database; paths: RepositoryPaths;
    connect: optional factory of another connection to the same database, which a
    scan of everything uses to run two things at once; keep_filesets: for a catalog
    scan of everything, a callable given every fileset's figures in the transaction
    that stores the scan (filesetcache.replace_all).
    """
    if mode not in MODES:
        raise ValueError(f"unknown scan mode {mode!r} (one of {', '.join(MODES)})")
    progress = progress or NullProgress()
    if mode == "catalog" and keys is None:
        return _scan_catalog_all(conn, include_attachments, progress, connect,
                                 keep_filesets)
    if mode != "catalog":
        check_repository(paths)
    started = datetime.now(timezone.utc)
    report = ScanReport(mode, started)
    if keys is None:
        # Every collection at once, with each file of the repository touched once (stat,
        # verify; catalog is _scan_catalog_all). Same figures as one by one. The sync
        # of the collections runs while the files stream (on the second connection).
        # Light targets, not model instances: storing figures for ten thousand model
        # instances spent a third of its time in Collection.key (get_kind_display).
        collections = []

        def sync_all(omero_conn):
            sync_collections(omero_conn, None)
            collections.extend(_live_targets())
            progress.start(len(collections))

        all_figures, report.problems = collection_figures_from_disk(
            conn, paths, mode == "verify", include_attachments, workers, progress, connect,
            meanwhile=sync_all)
        empty = _empty_disk_figures(mode)
        for c in collections:
            report.figures[c.key] = all_figures.get((c.kind, c.omero_id)) or empty()
        progress.advance(len(collections), 0, 0)
    else:
        sync_collections(conn, keys)
        wanted = set(keys)
        collections = [c for c in Collection.objects.filter(
                           gone=False, omero_id__in={i for _, i in keys})
                       if (c.kind, c.omero_id) in wanted]
        missing = wanted - {(c.kind, c.omero_id) for c in collections}
        if missing:
            raise UnknownCollection("not in OMERO: " + ", ".join(
                sorted(format_key(k, i) for k, i in missing)))
        progress.start(len(collections))
        reader = InventoryReader(conn, paths, include_attachments)
        for c in collections:
            inventory = reader.read(c.kind, c.omero_id)
            results = None
            if mode in ("stat", "verify"):
                stat_inventory(inventory, paths, workers)
            if mode == "verify":
                results = {r.path: verify_record(r) for r in inventory.files}
            figures = figures_from_inventory(inventory, mode, results)
            report.figures[c.key] = figures
            found = problems(inventory, results)
            if found:
                report.problems[c.key] = found
            progress.advance(1, figures.files, figures.bytes)
    report.finished = datetime.now(timezone.utc)
    report.collections = len(collections)
    report.files = sum(f.files for f in report.figures.values())
    report.bytes = sum(f.bytes for f in report.figures.values())
    store(collections, report)
    progress.done()
    return report


class _Target(NamedTuple):
    """What storing a scan needs of a Collection: a model instance costs ten times more
    to load, and a scan of everything loads ten thousand."""

    pk: int
    kind: str
    omero_id: int
    key: str


_KIND_NAMES = dict(Collection.KINDS)  # as Collection.key writes them


def _scan_catalog_all(conn, include_attachments, progress, connect, keep_filesets=None):
    """A catalog scan of every collection: a few statements in the database.

    With `connect`, the filesets' figures (half of the database's work) are summed on a
    second connection while this one syncs the collections and reads the rest of their
    figures: both run in the server, on a core each, and psycopg2 lets go of the
    interpreter lock while it waits.
    """
    started = datetime.now(timezone.utc)
    other = connect() if connect is not None else None
    try:
        # Only when the two statements run at once (see without_parallel_workers).
        both = [conn, other] if other is not None else []
        with ThreadPoolExecutor(1) as side, without_parallel_workers(*both):
            pending = (side.submit(fileset_figures, other) if other is not None else None)
            kept = []  # the filesets' figures, only if kept (memory: 300,000 at 3M files)

            def filesets():
                figures = pending.result() if pending is not None else fileset_figures(conn)
                if keep_filesets is not None:
                    kept.append(figures)
                return figures

            try:
                sync_collections(conn)
                targets = _live_targets()
                progress.start(len(targets))  # a cancelled job raises here
                all_figures = collection_figures(conn, include_attachments,
                                                 per_fileset=filesets)
            except BaseException:
                if other is not None:
                    other.cancel()  # do not wait seconds for figures nobody will read
                raise
    finally:
        if other is not None:
            other.close()
    report = ScanReport("catalog", started)
    for t in targets:
        report.figures[t.key] = all_figures.get((t.kind, t.omero_id)) or Figures()
    report.files = sum(f.files for f in report.figures.values())
    report.bytes = sum(f.bytes for f in report.figures.values())
    progress.advance(len(targets), report.files, report.bytes)
    report.finished = datetime.now(timezone.utc)
    report.collections = len(targets)
    with transaction.atomic():
        store(targets, report)
        if keep_filesets is not None:
            keep_filesets(kept[0] if kept else {})
    progress.done()
    return report


def _live_targets():
    return [_Target(pk, kind, oid, f"{_KIND_NAMES[kind]}:{oid}") for pk, kind, oid in
            Collection.objects.filter(gone=False).values_list("pk", "kind", "omero_id")]


def _empty_disk_figures(mode):
    def make():
        f = Figures(missing_files=0, size_mismatches=0, symlinks=0, pyramids=0,
                    thumbnail_bytes=0)
        f.checksum_mismatches = 0 if mode == "verify" else None
        return f
    return make


# The figures go through a temporary table filled by COPY: ten thousand rows in one round
# trip and no statement text to build (UPDATE ... FROM VALUES took three times longer).
_FIGURES_TABLE = "sm_scan_figures"
_CREATE = f"""
CREATE TEMPORARY TABLE {_FIGURES_TABLE} (
  id bigint, files bigint, bytes bigint, images bigint, shared_bytes bigint,
  thumbnail_bytes bigint, missing_files bigint, newest_file timestamptz,
  last_access timestamptz)
"""
_UPDATE = """
UPDATE {table} AS c SET files = v.files, bytes = v.bytes, images = v.images,
  shared_bytes = v.shared_bytes,
  thumbnail_bytes = coalesce(v.thumbnail_bytes, c.thumbnail_bytes),
  missing_files = coalesce(v.missing_files, c.missing_files),
  newest_file = v.newest_file,
  last_access = coalesce(v.last_access, c.last_access),
  scanned_at = %(finished)s, scan_mode = %(mode)s
FROM {figures} AS v
WHERE c.id = v.id
"""


def store(collections, report):
    """Latest figures on each Collection and a ScanResult each, in one transaction.

    Ten thousand collections must store in well under a second, hence COPY (of the
    figures into a temporary table, then one UPDATE from it; of the ScanResult rows)
    instead of the ORM's per-row CASE expressions. In CSV, None is written as an empty
    field, which COPY reads as NULL. Catalog mode measures no disk figures: the stored
    disk figures are kept.
    """
    latest = io.StringIO()
    results = io.StringIO()
    latest_row, result_row = csv.writer(latest).writerow, csv.writer(results).writerow
    started, finished = report.started.isoformat(), report.finished.isoformat()
    for c in collections:
        f = report.figures[c.key]
        latest_row((c.pk, f.files, f.bytes, f.images, f.shared_bytes, f.thumbnail_bytes,
                    f.missing_files, _iso(f.newest_file), _iso(f.last_access)))
        found = report.problems.get(c.key)
        result_row((c.pk, report.mode, started, finished, figures_json(f),
                    json.dumps(found) if found else "[]"))
    latest.seek(0)
    results.seek(0)
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(_CREATE)
            cur.cursor.copy_expert(f"COPY {_FIGURES_TABLE} FROM STDIN WITH (FORMAT csv)", latest)
            cur.execute(_UPDATE.format(table=Collection._meta.db_table, figures=_FIGURES_TABLE),
                        {"finished": report.finished, "mode": report.mode})
            # Dropped here, not ON COMMIT: store() may run twice in one outer transaction.
            cur.execute(f"DROP TABLE {_FIGURES_TABLE}")
            cur.cursor.copy_expert(
                f"COPY {ScanResult._meta.db_table} (collection_id, mode, started, finished,"
                " figures, errors) FROM STDIN WITH (FORMAT csv)", results)


def _iso(value):
    return None if value is None else value.isoformat()


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def figures_json(figures):
    """A Figures as JSON, datetimes as ISO text. asdict() deep-copies every value (a
    tenth of a catalog scan of everything): the fields are plain values, so their own
    dictionary is written as it is; only `extra` may nest, and then asdict() it is."""
    return json.dumps(asdict(figures) if figures.extra else vars(figures),
                      default=_json_default)


def _jsonable(figures):
    """A Figures as plain JSON values (what figures_json writes)."""
    return json.loads(figures_json(figures))
