"""Capacity planning: usage recorded once a day, and when the primary storage fills.

A group's or user's usage is stats.online_usage, as the statistics page and quotas show
it (each file once per group or user, from OMERO's database). Other totals here are
`collection_totals`: the sum of the collections' latest scan figures (Collection.bytes
and .files). The counting rule is the scan's, stated once in
docs/architecture.md ("How a scan counts"): a collection's filesets, OMERO 4 pixels with
their pyramids (a stat or verify scan finds them on disk; a catalog scan cannot), archived
originals and, with `include_attachments`, its file attachments; thumbnails never. Purged
collections hold nothing on the primary storage and count zero there.

The projection is a least-squares line through the primary storage's recorded used bytes
over a window of days that it names (never a guess without its basis): the day the
line reaches the file system's size is when the storage is full.
"""
import shutil
from datetime import date, timedelta

from django.db.models import Count, Q, Sum

from .. import settings
from ..catalog import db as catalog_db
from ..models import Collection, Copy, Location, UsageRecord
from .capacity import figures as cache_figures
from .stats import offline_keys, online_usage

ONLINE = ~Q(state=Collection.PURGED)


def collection_totals(queryset, group_by=None):
    """{"bytes", "files", "collections"} of the collections' online figures (the one
    function every total shown is computed by), or per value of `group_by`."""
    queryset = queryset.filter(gone=False)
    sums = dict(bytes=Sum("bytes", filter=ONLINE), files=Sum("files", filter=ONLINE),
                collections=Count("pk"))
    if group_by is None:
        row = queryset.aggregate(**sums)
        return {k: row[k] or 0 for k in sums}
    return {row[group_by]: {k: row[k] or 0 for k in sums}
            for row in queryset.values(group_by).annotate(**sums).order_by()}


def primary_usage():
    """(used bytes, file system size) of the primary storage (OMERO's data_dir)."""
    usage = shutil.disk_usage(settings.data_dir())
    return usage.total - usage.free, usage.total


def record_usage(day=None, people=False):
    """Records (or refreshes) the day's usage rows; idempotent, so it may run hourly and
    the last run of the day stands, except for the groups' and users' rows, written by
    the day's first run only (people=True: again). Returns the number of rows written."""
    day = day or date.today()
    rows = []
    try:
        used, size = primary_usage()
        online = collection_totals(Collection.objects.all())
        rows.append((UsageRecord.PRIMARY, 0, "primary storage", used, online["files"], size))
    except OSError:
        pass  # an unreachable repository records no primary row that day
    # Each group's and user's usage is read from OMERO's database (stats.online_usage),
    # a heavier statement than the rest: once a day, by the day's first run (the
    # schedule is hourly), or when asked.
    if people or not UsageRecord.objects.filter(
            day=day, scope__in=(UsageRecord.GROUP, UsageRecord.USER)).exists():
        rows += _people_rows()
    used_at = dict(Copy.objects.exclude(state=Copy.EVICTED).values("location")
                   .annotate(total=Sum("bytes")).values_list("location", "total"))
    for location in Location.objects.all():
        cache = cache_figures(location)  # tape, automated: the cache disk, as measured
        used = cache["write_bytes"] + cache["read_bytes"] if cache else used_at.get(location.pk)
        rows.append((UsageRecord.LOCATION, location.pk, location.name, used or 0, 0,
                     location.max_bytes))
    # One statement for all rows (an upsert on the day's unique key): the hourly record
    # stays a few milliseconds whatever the number of groups and users.
    UsageRecord.objects.bulk_create(
        [UsageRecord(day=day, scope=scope, subject=subject, name=name[:255], bytes=nbytes,
                     files=files, limit_bytes=limit)
         for scope, subject, name, nbytes, files, limit in rows],
        update_conflicts=True, unique_fields=["day", "scope", "subject"],
        update_fields=["name", "bytes", "files", "limit_bytes"])
    return len(rows)


def _people_rows():
    """The day's rows of each group and user: stats.online_usage, the figures the
    statistics page and the quotas show (each file once per group or user). None when
    OMERO's database cannot be read: the day records no group or user rows."""
    conn = None
    try:
        conn = catalog_db.connect()
        exclude = offline_keys()
        rows = []
        for scope, by, column in ((UsageRecord.GROUP, "group", "group"),
                                  (UsageRecord.USER, "owner", "owner")):
            names = dict(Collection.objects.filter(gone=False).values_list(
                f"{column}_id", f"{column}_name").distinct())
            online = online_usage(conn, by, exclude, settings.INCLUDE_ATTACHMENTS)
            for who in sorted(set(names) | set(online)):  # nothing online: a row of 0
                files, nbytes = online.get(who, (0, 0))
                rows.append((scope, who, names.get(who, ""), nbytes, files, None))
        return rows
    except catalog_db.CatalogUnavailable:
        return []
    finally:
        if conn is not None:
            conn.close()


def history(scope, since=None, subjects=None):
    """[{day, subject, name, bytes, files, limit_bytes}] oldest first."""
    query = UsageRecord.objects.filter(scope=scope)
    if since is not None:
        query = query.filter(day__gte=since)
    if subjects is not None:
        query = query.filter(subject__in=subjects)
    return list(query.order_by("day", "subject").values(
        "day", "subject", "name", "bytes", "files", "limit_bytes"))


def fit_line(points):
    """Least squares through [(x, y)]: (slope, intercept), or None for fewer than two
    distinct x."""
    n = len(points)
    if n < 2 or len({x for x, _ in points}) < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    slope = sxy / sxx
    return slope, my - slope * mx


def projection(window_days=90, today=None, freed_bytes=0):
    """When the primary storage reaches its size, from the line through the recorded
    used bytes of the last `window_days` days; freed_bytes lowers the line (the planner's
    "what if"). The answer names its basis: the window, the points, the rate."""
    today = today or date.today()
    since = today - timedelta(days=window_days)
    records = history(UsageRecord.PRIMARY, since=since)
    basis = {"window_days": window_days, "from": since, "to": today, "points": len(records)}
    if not records:
        return {**basis, "enough": False, "full_on": None,
                "note": "no usage recorded in this window yet (it is recorded daily)"}
    limit = records[-1]["limit_bytes"]
    used = records[-1]["bytes"] - freed_bytes
    origin = records[0]["day"]
    line = fit_line([((r["day"] - origin).days, r["bytes"]) for r in records])
    answer = {**basis, "limit_bytes": limit, "used_bytes": used, "freed_bytes": freed_bytes,
              "first_day": origin, "last_day": records[-1]["day"]}
    if line is None:
        return {**answer, "enough": False, "full_on": None, "bytes_per_day": None,
                "note": "needs usage recorded on at least two days of the window"}
    slope, intercept = line
    answer.update(enough=True, bytes_per_day=slope, intercept_bytes=intercept - freed_bytes)
    if slope <= 0:
        return {**answer, "full_on": None, "note": "usage is not growing in this window"}
    day_full = (limit - (intercept - freed_bytes)) / slope
    full_on = origin + timedelta(days=max(0.0, day_full))
    return {**answer, "full_on": max(full_on, today) if used < limit else today,
            "note": f"linear fit of {len(records)} days from {origin} to "
                    f"{records[-1]['day']}: {slope / 2**30:.2f} GiB a day"}
