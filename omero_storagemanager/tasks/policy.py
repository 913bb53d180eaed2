"""Scheduled policies: automatic archiving (manual 4.2, 6.3) and the quota check (6.5).

Automatic archive: all users or the listed ones; a collection is archived when its
content is not all in a verified copy at the current location (the archive plan: the
set of files, their sizes, identities, mtimes and checksums, OMERO 4 files included) and
its newest file (or, without one, the collection) is older than the minimal age. It submits one archive job per collection (so each is queued, logged
and resumed like a manual one) and returns what it submitted.
"""
import hashlib
from datetime import datetime, timedelta, timezone

from django.db.models import Count, Exists, OuterRef

from .. import catalog, preferences, settings
from ..catalog import fingerprint
from ..backends.base import LocationOffline
from ..engine import capacity
from ..engine.stats import usage_statistics
from ..models import Collection, Copy, CopyFile, Job, Location, PurgedFile, ScanResult
from .notify import location_full, quota_exceeded


def content_changed(conn, paths, location, log=lambda _: None):
    """changed(collection) for candidates(): True when the collection's files (the set,
    their sizes, identities and mtimes, or OMERO's checksums) are not all in a verified
    copy at `location` nor at any other location holding a verified copy of it, i.e.
    the archive plan would copy something everywhere. OMERO 4 files (Pixels/, Files/)
    are in the plan like any other. A collection wholly archived on a disk that was
    swapped for the current one (manual chapter 13: Drive-1 full, Drive-2 current) is
    not copied again: only what changed since goes to the current location.

    A plan stats every file: a collection whose plan found nothing keeps a memo of what
    it was made from (_memo), and is planned again only once that changed. Its disk half
    is what the last stat scan found (files, bytes, newest mtime), which reaches every
    collection within settings.STAT_SCAN_PERIOD_DAYS: what OMERO's database does not
    tell (a pyramid written after import, a file touched) is caught then."""
    from ..engine.archiveplan import ArchiveError, plan

    memo = _memo(conn, location)

    def changed(collection):
        holding = Location.objects.filter(
            copies__collection=collection, copies__state=Copy.VERIFIED).exclude(
            pk=location.pk).distinct().order_by("pk")
        seen = memo(collection)
        if seen == collection.auto_archive_memo:
            return False
        try:
            here = plan(conn, paths, collection, location, settings.INCLUDE_ATTACHMENTS)
            result = bool(here) and all(
                bool(plan(conn, paths, collection, where, settings.INCLUDE_ATTACHMENTS))
                for where in holding)
        except ArchiveError as exc:  # files missing: an archive would refuse, say why
            log(f"{collection.key}: not archived automatically: {exc}")
            return False
        Collection.objects.filter(pk=collection.pk).update(
            auto_archive_memo="" if result else seen)
        if result:
            changed.bytes_to_copy[collection.pk] = here.bytes
        return result
    changed.bytes_to_copy = {}  # of each changed collection, at `location`
    return changed


def _memo(conn, location):
    """memo(collection): a digest of everything an archive plan of it depends on, as
    the database and the latest scans say now (one statement for all collections'
    files in OMERO, two small queries per collection: its copies, what its last stat
    scan found)."""
    prints = fingerprint.content_fingerprints(conn, settings.INCLUDE_ATTACHMENTS)
    purged = dict(PurgedFile.objects.exclude(state=PurgedFile.RESTORED)
                  .values("collection").annotate(n=Count("pk"))
                  .values_list("collection", "n"))

    def memo(collection):
        copies = sorted(Copy.objects.filter(collection=collection, state=Copy.VERIFIED)
                        .values_list("pk", "location_id"))
        seen = (prints.get((collection.kind, collection.omero_id)),
                ScanResult.disk_content(collection), purged.get(collection.pk),
                collection.state,
                copies, location.pk, settings.INCLUDE_ATTACHMENTS)
        return hashlib.sha1(repr(seen).encode()).hexdigest()
    return memo


def _count_changed(collection):
    archived = (CopyFile.objects.filter(copy__collection=collection, copy__state=Copy.VERIFIED)
                .values("relpath").distinct().count())
    return archived < collection.files


def candidates(now=None, users=None, min_age_hours=None, changed=None):
    """Collections the automatic archive should copy now. changed(collection): whether
    it holds what no copy holds (content_changed(); by default the file counts, a cheap
    first look that misses a file replaced by another)."""
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
    changed = changed or _count_changed
    chosen = []
    for collection in query.order_by("kind", "omero_id"):
        # OMERO 4 collections may have no file time: their creation tells their age.
        newest = collection.newest_file or collection.created
        if newest is None or newest > now - min_age:
            continue  # still being added to, or never scanned
        # The archive job itself is incremental and copies exactly what is missing.
        if changed(collection):
            chosen.append(collection)
    return chosen


def auto_archive(job, handle):
    """Submits an archive job for each changed collection that fits at the current
    location. Those that do not fit wait for room (manual 7.2: archiving goes on only
    while the location is below its maximum size): no job that would fail, and one
    warning a night naming them, rather than an error e-mail per collection."""
    from .queue import submit

    from ..catalog.paths import RepositoryPaths
    from ..engine.incremental import refresh_catalog
    from ..engine.locations import current_location

    paths = RepositoryPaths(settings.data_dir(), settings.managed_dir())
    location = current_location()
    conn = catalog.connect()
    try:  # fresh figures first (file counts, newest file times): the incremental
        # catalogue reads what changed since its last refresh, or scans all when unsure
        refresh_catalog(conn, settings.INCLUDE_ATTACHMENTS, log=handle.log)
        # Changed means content not in a verified copy at the current location: a file
        # replaced by another, resized or touched counts, not only the file count.
        changed = content_changed(conn, paths, location, log=handle.log)
        chosen = candidates(changed=changed)
    finally:
        conn.close()
    room = _room(location)
    submitted, no_room = [], []
    for collection in chosen:
        needed = capacity.needed_bytes(location, changed.bytes_to_copy.get(collection.pk, 0))
        if room is not None:
            if needed > room:
                no_room.append(collection.key)
                continue
            room -= needed
        archive_job = submit("archive", [collection], requested_by=None,
                             params={"automatic": True})
        handle.log(f"{collection.key}: archive job {archive_job.pk} submitted")
        submitted.append(collection.key)
    if no_room:
        handle.log(f"{len(no_room)} collection(s) wait for room at {location.name}: "
                   + ", ".join(no_room))
        location_full(location, no_room)
    return {"submitted": submitted, "waiting_for_room": no_room}


def _room(location):
    """Bytes the current location can still take, as its maximum size counts them; None
    when that cannot be told now (a disk not connected: each archive job then waits
    for it, as a manual one does)."""
    try:
        return location.max_bytes - capacity.used_bytes(location)
    except LocationOffline:
        return None


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
