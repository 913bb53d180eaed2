"""Scheduled policies: automatic archiving (manual 4.2, 6.3) and the quota check (6.5).

Automatic archive: all users or the listed ones; a collection is archived when it has
never been archived or holds files not archived yet, and its newest file is older than
the minimal age. It submits one archive job per collection (so each is queued, logged
and resumed like a manual one) and returns what it submitted.
"""
from datetime import datetime, timedelta, timezone

from django.db.models import Exists, OuterRef

from .. import catalog, preferences, settings
from ..engine.stats import usage_statistics
from ..models import Collection, Copy, CopyFile, Job
from .notify import quota_exceeded


def candidates(now=None, users=None, min_age_hours=None):
    """Collections the automatic archive should copy now."""
    now = now or datetime.now(timezone.utc)
    users = preferences.get("auto_archive_users") if users is None else users
    min_age = timedelta(hours=preferences.get("auto_archive_min_age_hours")
                        if min_age_hours is None else min_age_hours)
    active = Job.objects.filter(state__in=Job.ACTIVE, kind="archive",
                                collections=OuterRef("pk"))
    query = (Collection.objects.filter(gone=False, files__gt=0)
             .exclude(state__in=[Collection.PURGED, Collection.RESTORING])
             .annotate(busy=Exists(active)).filter(busy=False))
    if users:
        query = query.filter(owner_id__in=users)
    chosen = []
    for collection in query.order_by("kind", "omero_id"):
        if collection.newest_file is None or collection.newest_file > now - min_age:
            continue  # still being added to, or never scanned
        archived = (CopyFile.objects.filter(copy__collection=collection,
                                            copy__state=Copy.VERIFIED)
                    .values("relpath").distinct().count())
        # Never archived, or more files than its copies hold: the archive job itself is
        # incremental and copies exactly what is missing.
        if archived < collection.files:
            chosen.append(collection)
    return chosen


def auto_archive(job, handle):
    from .queue import submit

    from ..catalog.paths import RepositoryPaths
    from ..engine.scan import scan

    conn = catalog.connect()
    try:  # fresh figures first: file counts and newest file times
        scan(conn, RepositoryPaths(settings.data_dir(), settings.managed_dir()), "catalog",
             include_attachments=settings.INCLUDE_ATTACHMENTS)
    finally:
        conn.close()
    submitted = []
    for collection in candidates():
        archive_job = submit("archive", [collection], requested_by=None,
                             params={"automatic": True})
        handle.log(f"{collection.key}: archive job {archive_job.pk} submitted")
        submitted.append(collection.key)
    return {"submitted": submitted}


def quota_check(job, handle):
    conn = catalog.connect()
    try:
        stats = usage_statistics(conn, settings.INCLUDE_ATTACHMENTS)
    finally:
        conn.close()
    over = [dict(entry, scope=scope[:-1]) for scope in ("users", "groups")
            for entry in stats[scope] if entry["over_quota"]]
    for entry in over:
        handle.log(f"over quota: {entry['scope']} {entry['name']}: {entry['online_bytes']} "
                   f"of {entry['quota_bytes']} bytes")
    if over:
        quota_exceeded(over)
    return {"over_quota": [f"{e['scope']}:{e['id']}" for e in over]}
