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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Dict, List

from django.db import connection, transaction
from psycopg2.extras import execute_values

from ..catalog.collections import UnknownCollection, format_key
from ..catalog.inventory import InventoryReader
from ..catalog.totals import Figures, collection_figures
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
         workers=4, connect=None):
    """Scan the collections named by `keys` ((kind, id) pairs), or all of them.

    conn: a read-only connection to the OMERO database; paths: RepositoryPaths;
    connect: optional factory of another connection to the same database, which a
    stat or verify scan of everything uses to run two queries at once.
    """
    if mode not in MODES:
        raise ValueError(f"unknown scan mode {mode!r} (one of {', '.join(MODES)})")
    progress = progress or NullProgress()
    if mode != "catalog":
        check_repository(paths)
    started = datetime.now(timezone.utc)
    sync_collections(conn, keys)
    collections = Collection.objects.filter(gone=False)
    if keys is not None:
        wanted = set(keys)
        collections = [c for c in collections.filter(omero_id__in={i for _, i in keys})
                       if (c.kind, c.omero_id) in wanted]
        missing = wanted - {(c.kind, c.omero_id) for c in collections}
        if missing:
            raise UnknownCollection("not in OMERO: " + ", ".join(
                sorted(format_key(k, i) for k, i in missing)))
    else:
        collections = list(collections)
    report = ScanReport(mode, started)
    progress.start(len(collections))
    if keys is None:
        # Every collection at once: in the database (catalog) or with each file of the
        # repository touched once (stat, verify). Same figures as one by one.
        if mode == "catalog":
            all_figures = collection_figures(conn, include_attachments)
            empty = Figures
        else:
            all_figures, report.problems = collection_figures_from_disk(
                conn, paths, mode == "verify", include_attachments, workers, progress, connect)
            empty = _empty_disk_figures(mode)
        for c in collections:
            report.figures[c.key] = all_figures.get((c.kind, c.omero_id)) or empty()
        progress.advance(len(collections), *(
            (sum(f.files for f in report.figures.values()),
             sum(f.bytes for f in report.figures.values())) if mode == "catalog" else (0, 0)))
    else:
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


def _empty_disk_figures(mode):
    def make():
        f = Figures(missing_files=0, size_mismatches=0, symlinks=0, pyramids=0,
                    thumbnail_bytes=0)
        f.checksum_mismatches = 0 if mode == "verify" else None
        return f
    return make


_UPDATE = """
UPDATE {table} AS c SET files = v.files, bytes = v.bytes, images = v.images,
  shared_bytes = v.shared_bytes,
  thumbnail_bytes = coalesce(v.thumbnail_bytes, c.thumbnail_bytes),
  missing_files = coalesce(v.missing_files, c.missing_files),
  newest_file = v.newest_file,
  last_access = coalesce(v.last_access, c.last_access),
  scanned_at = v.scanned_at, scan_mode = v.scan_mode
FROM (VALUES %s) AS v(id, files, bytes, images, shared_bytes, thumbnail_bytes,
                      missing_files, newest_file, last_access, scanned_at, scan_mode)
WHERE c.id = v.id
"""
_TEMPLATE = ("(%s, %s, %s, %s, %s, %s::bigint, %s::bigint, %s::timestamptz,"
             " %s::timestamptz, %s::timestamptz, %s)")


def store(collections, report):
    """Latest figures on each Collection and a ScanResult each, in one transaction.

    Ten thousand collections must store in well under a second, hence one
    UPDATE ... FROM (VALUES ...) instead of the ORM's per-row CASE expressions.
    Catalog mode measures no disk figures: the stored disk figures are kept.
    """
    rows = []
    results = io.StringIO()
    writer = csv.writer(results)
    for c in collections:
        f = report.figures[c.key]
        rows.append((c.pk, f.files, f.bytes, f.images, f.shared_bytes, f.thumbnail_bytes,
                     f.missing_files, f.newest_file, f.last_access, report.finished,
                     report.mode))
        writer.writerow((c.pk, report.mode, report.started.isoformat(),
                         report.finished.isoformat(), json.dumps(_jsonable(f)),
                         json.dumps(report.problems.get(c.key, []))))
    results.seek(0)
    with transaction.atomic():
        with connection.cursor() as cur:
            execute_values(cur.cursor, _UPDATE.format(table=Collection._meta.db_table), rows,
                           template=_TEMPLATE, page_size=2000)
            # COPY: ten thousand ScanResult rows in one round trip.
            cur.cursor.copy_expert(
                f"COPY {ScanResult._meta.db_table} (collection_id, mode, started, finished,"
                " figures, errors) FROM STDIN WITH (FORMAT csv)", results)


def _jsonable(figures):
    data = asdict(figures)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    return data
