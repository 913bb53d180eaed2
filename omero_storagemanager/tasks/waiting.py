"""Waiting is a state, not a failure (issue 20).

A job that cannot go on until something outside the app happens (a disk connected, a
copy restored from tape into the read cache, another job on its collection finished)
ends its run WAITING. It keeps its place for as long as that takes: a run that ends
waiting gives back the attempt runner.claim counted, so days or weeks of rechecks
never make it fail (attempts count runs that died, as max_attempts intends).

E-mails, to the admins: one question when a wait that needs a person starts (kinds
medium and cache), a reminder at most every settings.WAIT_REMINDER seconds while it
lasts (sent by the monitor, so the interval holds however many workers recheck), and
an info e-mail when such a wait ends with the job done. A wait for another job (kind
busy) needs nobody and sends nothing. A wait for an automated archive's software (kind
archiver: its XML restore order is the question, manual chapter 15) sends no question:
the admins hear of it only once it has lasted a reminder interval (the archiver is
late: a disc that cannot be read), then at that interval and when it ends.

`wait_reason` is what an admin reads (paths and all); `wait_public` says the same
without server paths, for everyone else.
"""
from datetime import datetime, timedelta, timezone

from django.db import transaction

from .. import settings
from ..backends.base import LocationOffline
from ..engine.locks import CollectionBusy
from ..engine.restore import RestoreWaiting
from ..models import Job

WAIT_EXCEPTIONS = (RestoreWaiting, LocationOffline, CollectionBusy)
ASKS_A_PERSON = ("medium", "cache")
REMINDED = ASKS_A_PERSON + ("archiver",)


def _now():
    return datetime.now(timezone.utc)


def describe(job, exc):
    """(kind, public text) of the wait `exc` puts `job` in."""
    if isinstance(exc, RestoreWaiting):
        kinds = {getattr(r, "kind", "medium") for r in exc.reasons}
        public = sorted({getattr(r, "public", "waiting for an archive copy to be reachable")
                         for r in exc.reasons})
        kind = next((k for k in ("medium", "cache") if k in kinds), "archiver")
        return kind, "; ".join(public)
    if isinstance(exc, CollectionBusy):
        return "busy", "waiting for another job on the same collection to finish"
    name = f"'{job.location.name}'" if job.location_id else "an archive location"
    return "medium", f"waiting for archive location {name} to be connected"


def enter(job, exc, finish, now=None):
    """End this run of `job` WAITING for `exc` (finish: the runner's row update).
    Sends the question e-mail when a wait that needs a person starts."""
    now = now or _now()
    kind, public = describe(job, exc)
    started = job.wait_since is None or job.wait_kind != kind
    # A run that ends waiting gives its attempt back: attempts count runs that died or
    # failed, and a wait rechecked every few minutes for weeks must not use them up.
    job.attempts = max(0, job.attempts - 1)
    fields = dict(wait_reason=str(exc), wait_kind=kind, wait_public=public,
                  attempts=job.attempts,
                  next_check=now + timedelta(seconds=settings.WAIT_RECHECK))
    if started:
        fields["wait_since"] = now
        fields["wait_reminded"] = now if kind in REMINDED else None
    finish(job, Job.WAITING, **fields)
    if started and kind in ASKS_A_PERSON:
        from .notify import job_waiting

        job_waiting(job, str(exc))


def leave(job):
    """Fields that clear the wait when a run ends otherwise (done, failed, cancelled),
    and the wait that ended ({since, seconds, kind}) or None."""
    fields = dict(wait_kind="", wait_public="", wait_since=None, wait_reminded=None,
                  next_check=None)
    told = job.wait_kind in ASKS_A_PERSON or (
        job.wait_kind in REMINDED and job.wait_reminded and job.wait_reminded > job.wait_since)
    if job.wait_since is None or not told:
        return fields, None
    ended = {"since": job.wait_since.isoformat(), "kind": job.wait_kind,
             "seconds": round((_now() - job.wait_since).total_seconds())}
    return fields, ended


def remind(now=None):
    """Send a reminder for every job waiting for a person whose last e-mail is
    WAIT_REMINDER seconds old. Returns the ids of the jobs reminded."""
    now = now or _now()
    due_before = now - timedelta(seconds=settings.WAIT_REMINDER)
    reminded = []
    for job in Job.objects.filter(state=Job.WAITING, wait_kind__in=REMINDED,
                                  wait_reminded__lte=due_before, cancel_requested=False):
        with transaction.atomic():
            # Only one caller wins a reminder (the monitor may run on several hosts).
            won = Job.objects.filter(pk=job.pk, state=Job.WAITING,
                                     wait_reminded=job.wait_reminded).update(wait_reminded=now)
        if won:
            from .notify import job_still_waiting

            job_still_waiting(job, now)
            reminded.append(job.pk)
    return reminded


def public_reason(job, admin):
    """What the job waits for, as this reader may see it."""
    if admin:
        return job.wait_reason
    if job.state == Job.WAITING:
        return job.wait_public or "waiting for an archive copy to be reachable"
    if job.wait_reason.startswith("worker "):
        return "resuming: the worker running it stopped answering"
    # Queued behind another job or a slot: these reasons name no path.
    return job.wait_reason
