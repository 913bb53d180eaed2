"""The incremental catalogue: figures that follow OMERO's changes within minutes, at a
cost that grows with what changed, not with what exists.

A refresh reads OMERO's eventlog from the last row it read (catalog/eventlog.py),
finds the Projects and Screens a change can reach, and recomputes the catalogue
figures of those only (catalog/scoped.py), which equal a full scan's. Where eventlog
cannot tell what changed (rows deleted by a graph request, rows pruned before we read
them, no catalogue yet, statistics reset), it makes a full catalogue scan instead and
says why in the job log. The cursor (CatalogCursor) moves in the same transaction as
the figures: a refresh killed half way leaves the changes to be read again.
"""
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from django.db import transaction
from django.db.models import Sum

from ..catalog import eventlog, scoped
from ..catalog.totals import Figures
from ..models import CatalogCursor, Collection, FilesetFigures
from . import filesetcache
from .progress import NullProgress
from .scan import ScanReport, scan, store
from .sync import sync_collections

FULL, INCREMENTAL = "full", "incremental"
# Past this share of all collections (and this many: on a small catalogue both are
# quick), one full scan costs less than the scoped one.
FULL_SCAN_SHARE = 0.25
FULL_SCAN_MIN = 500


@dataclass
class RefreshReport:
    mode: str  # FULL or INCREMENTAL
    reason: str  # why FULL ("" for INCREMENTAL)
    events: int = 0  # eventlog rows read
    collections: int = 0  # collections whose figures were stored
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0


def _cursor():
    return CatalogCursor.objects.order_by("pk").first() or CatalogCursor()


def _advance(cursor, state, mode, reason):
    cursor.last_eventlog_id = state.newest if state.newest is not None else 0
    cursor.pending = state.pending
    cursor.deletions = state.deletions
    cursor.mode, cursor.reason = mode, reason
    cursor.updated = datetime.now(timezone.utc)
    cursor.save()


def refresh_catalog(conn, include_attachments=True, progress=None, connect=None, log=None,
                    force_full=False):
    """Bring the catalogue figures up to date with OMERO. Returns a RefreshReport.

    conn: a read-only connection to the OMERO database; connect: a factory of a second
    one, which a full scan uses to run two statements at once; log: a callable taking a
    line for the job log."""
    progress = progress or NullProgress()
    log = log or (lambda line: None)
    started = time.monotonic()
    cursor = _cursor()
    # Read before anything else: changes made while we work are read next time.
    state = eventlog.read_state(conn)
    reason = "asked for" if force_full else eventlog.why_full(
        cursor.last_eventlog_id, cursor.deletions, state)
    # The fileset figures kept (filesetcache) stay right through a full scan too, when
    # eventlog says which filesets changed: a full scan then need not rewrite them all
    # (a fifth of its time on a million files).
    keeps = (eventlog.fileset_figures_hold(cursor.last_eventlog_id, cursor.deletions, state)
             and FilesetFigures.objects.exists())
    changes = None
    if reason is None or keeps:
        changes = eventlog.read_changes(conn, cursor.last_eventlog_id, state.newest,
                                        cursor.pending)
        if changes.deletes:
            table, oid = changes.deletes[0]
            reason = reason or (f"eventlog logs {len(changes.deletes)} deleted row(s), such "
                                f"as {table} {oid}: what held them is gone")
            keeps = keeps and not any(t in eventlog.FILESET_TABLES for t, _ in changes.deletes)
        if changes.unknown_pending:
            reason = reason or "a transaction open at the last refresh can no longer be traced"
            keeps = False
    keys = None
    if reason is None:
        keys = eventlog.reached(conn, changes)
        total = Collection.objects.filter(gone=False).count()
        if len(keys) > max(FULL_SCAN_SHARE * total, FULL_SCAN_MIN):
            reason = (f"{len(keys)} of {total} collections reached: one full scan costs "
                      "less")
    if reason is not None:
        log(f"full catalogue scan: {reason}")
        dirty = eventlog.dirty_filesets(conn, changes) if keeps else ()
        _expect(progress, Collection.objects.filter(gone=False))
        report = scan(conn, None, "catalog", None, include_attachments, progress,
                      connect=connect,
                      keep_filesets=None if keeps else filesetcache.replace_all)
        with transaction.atomic():
            filesetcache.keep(dirty, {})
            _advance(_cursor(), state, FULL, reason)
        return RefreshReport(FULL, reason, changes.rows if changes else 0,
                             report.collections, report.files, report.bytes,
                             time.monotonic() - started)
    dirty = eventlog.dirty_filesets(conn, changes)
    result = _refresh(conn, keys, include_attachments, progress, dirty)
    with transaction.atomic():
        store(result.targets, result.report)
        filesetcache.keep(dirty, result.computed)
        _advance(_cursor(), state, INCREMENTAL, "")
    progress.advance(len(result.targets), result.report.files, result.report.bytes)
    progress.done()
    log(f"incremental catalogue: {changes.rows} eventlog row(s)"
        + (f" ({changes.late} committed late)" if changes.late else "")
        + f", {len(result.targets)} collection(s) refreshed")
    return RefreshReport(INCREMENTAL, "", changes.rows, len(result.targets),
                         result.report.files, result.report.bytes,
                         time.monotonic() - started)


def _expect(progress, collections):
    """Tell a job's progress the files and bytes to expect: those the collections held at
    their last scan (the job page shows done of total, rate and time left from them)."""
    if hasattr(progress, "set_totals"):
        totals = collections.aggregate(files=Sum("files"), nbytes=Sum("bytes"))
        progress.set_totals(totals["files"] or 0, totals["nbytes"] or 0)


@dataclass
class _Scoped:
    targets: list
    report: ScanReport
    computed: dict  # figures of filesets read from OMERO, to keep (filesetcache.keep)


def _refresh(conn, keys, include_attachments, progress, dirty):
    """The figures of the collections `keys`, as a ScanReport ready to store; the
    figures of their filesets are those kept, but for the `dirty` ones."""
    from .scan import _KIND_NAMES, _Target

    started = datetime.now(timezone.utc)
    if keys:
        sync_collections(conn, sorted(keys))
    wanted = set(keys)
    targets = [_Target(pk, kind, oid, f"{_KIND_NAMES[kind]}:{oid}")
               for pk, kind, oid in Collection.objects.filter(
                   gone=False, omero_id__in={i for _, i in wanted}).values_list(
                       "pk", "kind", "omero_id")
               if (kind, oid) in wanted]
    progress.start(len(targets))
    _expect(progress, Collection.objects.filter(pk__in=[t.pk for t in targets]))
    computed = {}

    def per_fileset(filesets):
        found, read = filesetcache.figures_for(
            filesets, dirty, lambda ids: scoped.fileset_figures_of(conn, ids))
        computed.update(read)
        return found

    figures = scoped.figures_of(conn, [(t.kind, t.omero_id) for t in targets],
                                include_attachments, per_fileset)
    report = ScanReport("catalog", started)
    for t in targets:
        report.figures[t.key] = figures.get((t.kind, t.omero_id)) or Figures()
    report.collections = len(targets)
    report.files = sum(f.files for f in report.figures.values())
    report.bytes = sum(f.bytes for f in report.figures.values())
    report.finished = datetime.now(timezone.utc)
    return _Scoped(targets, report, computed)


def nothing_to_read(conn):
    """True when a refresh now would find nothing: a catalogue exists, eventlog has no
    row past the last one read, no transaction was open at that read, and nothing that
    forces a full scan happened (eventlog.why_full). The catalogue's schedule then runs
    no job at all: every few minutes, a job each time would fill the job list."""
    cursor = CatalogCursor.objects.order_by("pk").first()
    if cursor is None or cursor.pending:
        return False
    state = eventlog.read_state(conn)
    return (eventlog.why_full(cursor.last_eventlog_id, cursor.deletions, state) is None
            and (state.newest or 0) == cursor.last_eventlog_id)
