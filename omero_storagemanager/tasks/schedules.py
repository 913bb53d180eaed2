"""Scheduled tasks (manual 6.6), kept as django-q2 Schedule rows so django-q2's own
scheduler fires them and the admin page edits them.

Each kind runs at one or more times a day ("00:00, 12:00"): one daily Schedule per time,
named "storagemanager:<kind>@HH:MM". When it fires it submits a Job of that kind, unless
one is already queued or running (a slow night must not pile jobs up).
"""
import re
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..models import Job

SCHEDULED = ("backup", "sync", "scan", "cache_purge", "auto_archive", "quota_check")
PREFIX = "storagemanager:"
FUNC = "omero_storagemanager.tasks.schedules.run_scheduled"
MONITOR = "storagemanager:monitor"
# The incremental catalogue, every settings.CATALOG_REFRESH_MINUTES minutes (migration 0013).
CATALOG_REFRESH = "storagemanager:catalog_refresh"
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class BadSchedule(ValueError):
    pass


def parse_times(text):
    """'00:00, 12:00' -> ['00:00', '12:00'] (sorted, unique); refuses anything else."""
    times = set()
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        match = _TIME.match(part)
        if not match:
            raise BadSchedule(f"not a time of day: {part!r} (write HH:MM, e.g. 00:00, 12:00)")
        times.add(f"{int(match.group(1)):02d}:{match.group(2)}")
    return sorted(times)


def next_run(hhmm, now=None):
    """The next moment, after `now`, that the clock shows HH:MM (server time zone)."""
    now = timezone.localtime(now or timezone.now())
    hour, minute = map(int, hhmm.split(":"))
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= now:
        candidate += timedelta(days=1)
    return candidate


def set_schedule(kind, times, now=None):
    """Run `kind` daily at `times` (a list or "00:00, 12:00"); empty: disabled."""
    from django_q.models import Schedule

    if kind not in SCHEDULED:
        raise BadSchedule(f"{kind!r} cannot be scheduled (one of {', '.join(SCHEDULED)})")
    times = parse_times(times) if isinstance(times, str) else parse_times(",".join(times))
    if kind == "backup" and times:
        _check_backup_tools()
    with transaction.atomic():
        Schedule.objects.filter(name__startswith=f"{PREFIX}{kind}@").delete()
        for hhmm in times:
            Schedule.objects.create(
                name=f"{PREFIX}{kind}@{hhmm}", func=FUNC, args=repr(kind),
                schedule_type=Schedule.DAILY, repeats=-1, next_run=next_run(hhmm, now))
    return times


def _check_backup_tools():
    """A nightly backup that could never run is refused when it is set, naming the
    server's and the clients' versions (engine/pgtools.py)."""
    from django.db import connection

    from ..engine.pgtools import BackupError, find_program

    try:
        find_program("pg_dump", connection)
    except BackupError as exc:
        raise BadSchedule(f"backup cannot be scheduled: {exc}") from None


def get_schedules():
    """{kind: {"times": [...], "next_run": datetime or None}} for every schedulable kind."""
    from django_q.models import Schedule

    found = {kind: {"times": [], "next_run": None} for kind in SCHEDULED}
    for s in Schedule.objects.filter(name__startswith=PREFIX).exclude(
            name__in=(MONITOR, CATALOG_REFRESH)):
        kind, hhmm = s.name[len(PREFIX):].split("@")
        if kind in found:
            found[kind]["times"].append(hhmm)
            nxt = found[kind]["next_run"]
            found[kind]["next_run"] = s.next_run if nxt is None else min(nxt, s.next_run)
    for entry in found.values():
        entry["times"].sort()
    return found


def run_scheduled(kind):
    """What a schedule runs: submit a job of `kind` unless one is already active."""
    if Job.objects.filter(kind=kind, state__in=Job.ACTIVE).exists():
        return f"{kind}: a job is already queued or running"
    from .queue import submit

    job = submit(kind, params={"scheduled": True})
    return f"{kind}: job {job.pk}"


def refresh_catalog():
    """What the catalogue's schedule runs: an incremental catalog scan job, unless a scan
    is already queued or running (it brings the figures up to date as well)."""
    if Job.objects.filter(kind="scan", state__in=Job.ACTIVE).exists():
        return "catalog refresh: a scan job is already queued or running"
    from .. import catalog
    from ..engine.incremental import nothing_to_read
    from .queue import submit

    try:
        conn = catalog.connect()
    except catalog.CatalogUnavailable:
        conn = None  # the job says why, as any scan does
    if conn is not None:
        try:
            if nothing_to_read(conn):
                return "catalog refresh: nothing changed in OMERO since the last refresh"
        finally:
            conn.close()

    job = submit("scan", params={"mode": "catalog", "incremental": True, "scheduled": True})
    return f"catalog refresh: job {job.pk}"


def run_now(kind, requested_by=None):
    """The admin page's "Run now" (manual chapter 9)."""
    from .queue import submit

    if kind not in SCHEDULED:
        raise BadSchedule(f"{kind!r} is not a scheduled task")
    return submit(kind, requested_by=requested_by, params={"run_now": True})
