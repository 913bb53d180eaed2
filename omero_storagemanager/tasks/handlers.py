"""One function per job kind: read the job's targets, call the engine, summarise.

Each is idempotent (the engine is): a job resumed after its worker died runs its
handler again and picks up where the last run stopped.
"""
from .. import catalog, preferences, settings
from ..catalog.paths import RepositoryPaths
from ..engine.archive import archive_collection
from ..gateway.service import service_session
from ..engine.locations import audit, current_location, purge_read_cache, rescan
from ..engine.purge import PurgeError, purge_collection
from ..engine.restore import restore_collection
from ..engine.incremental import refresh_catalog
from ..engine.scan import scan
from ..engine.sync import sync_collections
from ..models import Location
from .backup import backup_job
from .policy import auto_archive, quota_check


def _paths():
    return RepositoryPaths(settings.data_dir(), settings.managed_dir())


def _gateway():
    """The service account's gateway for one job, closed when the job's step ends."""
    return service_session()


class _Catalog:
    """A read-only OMERO database connection for the length of a job."""

    def __enter__(self):
        self.conn = catalog.connect()
        return self.conn

    def __exit__(self, *exc):
        self.conn.close()


def _collections(job):
    return list(job.collections.order_by("kind", "omero_id"))


def sync(job, handle):
    with _Catalog() as conn:
        report = sync_collections(conn)
    handle.log(f"{report.total} collections: {len(report.added)} new, "
               f"{len(report.changed)} changed, {len(report.gone)} gone")
    return {"total": report.total, "added": len(report.added), "gone": len(report.gone)}


def scan_job(job, handle):
    mode = job.params.get("mode", "catalog")
    if job.params.get("incremental"):
        return refresh_job(job, handle)
    targets = _collections(job)
    keys = [(c.kind, c.omero_id) for c in targets] or None
    with _Catalog() as conn:
        report = scan(conn, _paths(), mode, keys, settings.INCLUDE_ATTACHMENTS, handle,
                      connect=catalog.connect)
    for key, problems in sorted(report.problems.items()):
        for p in problems:
            handle.error(f"{key}: {p['problem']}: {p['path']}")
    handle.log(f"{mode} scan of {report.collections} collections: {report.files} files, "
               f"{report.bytes} bytes")
    summary = {"mode": mode, "collections": report.collections, "files": report.files,
               "bytes": report.bytes, "problems": sum(len(p) for p in report.problems.values())}
    if job.params.get("scheduled") and mode == "catalog" and keys is None:
        summary["stat_scanned"] = _rolling_stat_scan(handle)
    return summary


def _rolling_stat_scan(handle):
    """The slice of collections whose disk figures are oldest (tasks/rolling.py)."""
    from .rolling import stat_slice

    chosen = [(c.kind, c.omero_id) for c in stat_slice()]
    if not chosen:
        return 0
    with _Catalog() as conn:
        report = scan(conn, _paths(), "stat", chosen, settings.INCLUDE_ATTACHMENTS, handle)
    handle.log(f"rolling stat scan of {report.collections} collections (oldest figures "
               f"first; all within {settings.STAT_SCAN_PERIOD_DAYS} days)")
    return report.collections


def refresh_job(job, handle):
    """The catalogue brought up to date from OMERO's eventlog (a full catalog scan where
    eventlog cannot tell what changed: the log says why)."""
    with _Catalog() as conn:
        report = refresh_catalog(conn, settings.INCLUDE_ATTACHMENTS, handle,
                                 connect=catalog.connect, log=handle.log,
                                 force_full=bool(job.params.get("full")))
    return {"mode": "catalog", "refresh": report.mode, "reason": report.reason,
            "events": report.events, "collections": report.collections,
            "files": report.files, "bytes": report.bytes,
            "seconds": round(report.seconds, 3)}


def archive(job, handle):
    location = job.location or current_location()
    results = []
    with _Catalog() as conn:
        for collection in _collections(job):
            handle.check_cancel()
            result = archive_collection(conn, _paths(), collection, location,
                                        settings.INCLUDE_ATTACHMENTS, settings.COPY_WORKERS,
                                        handle, log=handle.log)
            results.append({"collection": result.collection, "state": result.state,
                            "files": result.files, "bytes": result.bytes})
            if result.copy_id:
                handle.files(f"{collection.key}\t{e.relpath}\t{e.size}\t{e.checksum}"
                             for e in result_entries(result.copy_id))
    from .plans import purge_after_archive  # the planner's "then purge when verified"

    follow = purge_after_archive(job)
    return {"location": location.name, "collections": results,
            **({"purge_job": follow.pk} if follow else {})}


def result_entries(copy_id):
    from ..models import CopyFile

    return CopyFile.objects.filter(copy_id=copy_id).order_by("relpath").iterator()


def purge(job, handle):
    collections = _collections(job)
    along = {c.key for c in collections}
    results = []
    with _gateway() as gateway, _Catalog() as conn:
        for collection in collections:
            handle.check_cancel()
            try:
                plan = purge_collection(
                    conn, _paths(), collection, gateway, preferences.get("copies_required"),
                    along, preferences.get("purge_rename"), preferences.get("archive_user_id"),
                    preferences.get("archive_group_id"), settings.INCLUDE_ATTACHMENTS,
                    log=handle.log, progress=handle,
                    audit_max_age_days=settings.PURGE_AUDIT_MAX_AGE_DAYS,
                    sample_above=settings.PURGE_SAMPLE_ABOVE)
            except PurgeError as exc:  # e.g. an empty collection: the others go on
                handle.error(str(exc))
                results.append({"collection": collection.key, "error": str(exc)})
                continue
            handle.files(f"{collection.key}\t{c.record.path}\tpurged" for c in plan.freed)
            for path, reason in plan.blocked:
                handle.log(f"{collection.key}: kept {path}: {reason}")
            results.append({"collection": collection.key, "freed_files": len(plan.freed),
                            "freed_bytes": plan.freed_bytes, "blocked": len(plan.blocked)})
    return {"collections": results}


def restore(job, handle):
    results = []
    # conn: which purged files OMERO still has (those it deleted are left out)
    with _gateway() as gateway, _Catalog() as conn:
        for collection in _collections(job):
            handle.check_cancel()
            result = restore_collection(collection, gateway, log=handle.log,
                                        workers=settings.COPY_WORKERS, progress=handle,
                                        paths=_paths(), conn=conn)
            results.append({"collection": result.collection, "files": result.restored,
                            "bytes": result.bytes, "not_in_omero": result.not_in_omero})
    return {"collections": results}


def cache_purge(job, handle):
    locations = [job.location] if job.location else list(
        Location.objects.filter(purge_enabled=True, type__in=[Location.TAPE, Location.AUTOMATED]))
    evicted = {}
    for location in locations:
        result = purge_read_cache(location)
        evicted[location.name] = len(result.evicted)
        handle.log(f"{location.name}: evicted {len(result.evicted)} bag(s), "
                   f"{result.freed_bytes} bytes")
        if result.kept:  # the tape software has not taken them yet: say why it stays over
            handle.log(f"{location.name}: kept {len(result.kept)} bag(s) over the watermark "
                       "that are still in write/ (not on the archive medium yet): "
                       + ", ".join(result.kept))
    return {"evicted": evicted}


def location_rescan(job, handle):
    report = rescan(job.location)
    handle.log(f"{job.location.name}: {len(report.added)} bag(s) added to the catalogue, "
               f"{len(report.missing)} missing, {len(report.back)} found again")
    for path in report.missing:
        handle.error(f"copy {path} is no longer on {job.location.name}")
    if report.missing:
        from .notify import copies_missing

        copies_missing(job, report)
    return {"added": len(report.added), "missing": report.missing, "back": len(report.back),
            "orphaned": report.orphaned}


def audit_job(job, handle):
    report = audit(job.location, job.params.get("fraction", 1.0))
    for problem in report.problems:
        handle.error(problem)
    handle.log(f"audited {report.audited} copies, {len(report.failed)} failed, "
               f"{len(report.unreachable)} not reachable")
    if report.failed:
        from .notify import audit_failed

        audit_failed(job, report)
    return {"audited": report.audited, "failed": report.failed,
            "unreachable": len(report.unreachable)}


HANDLERS = {
    "sync": sync,
    "scan": scan_job,
    "archive": archive,
    "purge": purge,
    "restore": restore,
    "cache_purge": cache_purge,
    "location_rescan": location_rescan,
    "audit": audit_job,
    "backup": backup_job,
    "quota_check": quota_check,
    "auto_archive": auto_archive,
}
