"""Submitting jobs and deciding which may run now.

Rules (manual 4.1-4.4, 6.6): a collection never has two jobs running at once; jobs of
one kind run one at a time unless settings.CONCURRENCY allows more. A job that may not
run yet stays QUEUED; every job that ends, and the monitor, dispatch what became free.
"""
from datetime import datetime, timezone

from django.db import connection, transaction

from .. import settings
from ..models import Job

RUN_JOB = "omero_storagemanager.tasks.runner.run_job"
# Serialises the decision "may this job run now?" across all workers and hosts.
CLAIM_LOCK = 0x534D_4A4F  # "SMJO"


class JobRefused(ValueError):
    """A job that cannot be submitted as asked (the message says why)."""


def submit(kind, collections=(), location=None, params=None, requested_by=None,
           dispatch_now=True):
    """Create a QUEUED job and ask the cluster to run it. Returns the Job.

    requested_by: (OMERO user id, name) of who asked, or None for the system.
    """
    if kind not in dict(Job.KINDS):
        raise JobRefused(f"unknown job kind {kind!r}")
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind, location=location, params=params or {},
            requested_by_id=requested_by[0] if requested_by else None,
            requested_by_name=requested_by[1] if requested_by else "system")
        if collections:
            job.collections.set(collections)
    if dispatch_now:
        transaction.on_commit(lambda: enqueue(job))
    return job


def enqueue(job):
    """Put one 'run job N' task on the django-q2 broker."""
    from django_q.tasks import async_task

    async_task(RUN_JOB, job.pk, group="storagemanager", task_name=f"storagemanager-job-{job.pk}")


def claim_lock():
    """Transaction-scoped advisory lock: one claim decision at a time, cluster-wide."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK])


def blocker(job):
    """Why `job` may not start now (another job holds its collection or its kind's
    slots), or None. Call inside claim_lock()."""
    running = Job.objects.filter(state=Job.RUNNING).exclude(pk=job.pk)
    busy = running.filter(collections__in=job.collections.all()).distinct().first()
    if busy is not None:
        return f"waiting for job {busy.pk} ({busy.kind}) on the same collection"
    limit = settings.CONCURRENCY.get(job.kind, 1)
    if running.filter(kind=job.kind).count() >= limit:
        return f"waiting for a free {job.kind} slot ({limit} at a time)"
    if job.location_id and running.filter(location_id=job.location_id).exists() \
            and job.kind in ("cache_purge", "location_rescan"):
        return "waiting for the location to be free"
    return None


def dispatch_ready(now=None):
    """Enqueue a task for every queued job that may run now, and every waiting job
    whose time to look again has come. Returns the jobs enqueued."""
    now = now or datetime.now(timezone.utc)
    started = []
    with transaction.atomic():
        claim_lock()
        slots = {}
        for job in Job.objects.filter(state=Job.QUEUED, cancel_requested=False).order_by("pk"):
            if blocker(job) is None and slots.get(job.kind, 0) < settings.CONCURRENCY.get(job.kind, 1):
                slots[job.kind] = slots.get(job.kind, 0) + 1
                started.append(job)
        due = Job.objects.filter(state=Job.WAITING, next_check__lte=now, cancel_requested=False)
        started.extend(due)
    for job in started:
        enqueue(job)
    return started


def cancel(job):
    """Cancel a job: at once when it is not running; a running job stops at its next
    progress step (the engine's steps are idempotent, so stopping anywhere is safe)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.state in (Job.QUEUED, Job.WAITING):
            job.state, job.finished = Job.CANCELLED, datetime.now(timezone.utc)
        elif job.state != Job.RUNNING:
            raise JobRefused(f"job {job.pk} is {job.state}: nothing to cancel")
        job.cancel_requested = True
        job.save()
    return job


def retry(job):
    """Run a failed or cancelled job again, as a new attempt of the same job."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.state not in (Job.FAILED, Job.CANCELLED):
            raise JobRefused(f"job {job.pk} is {job.state}: only failed or cancelled jobs "
                             "can be retried")
        job.state, job.error, job.cancel_requested, job.attempts = Job.QUEUED, "", False, 0
        job.finished = None
        job.save()
    transaction.on_commit(lambda: enqueue(job))
    return job
