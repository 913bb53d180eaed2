"""The task django-q2 workers run: `run_job(job_id)`.

A task only asks to run its job. Under a cluster-wide lock the runner claims the job if
it is QUEUED, WAITING (time to look again) or RUNNING with a dead worker (no heartbeat:
resumed); anything else (done, cancelled, running elsewhere, a second delivery of the
same task) is left alone. Attempts are counted here, not by django-q2, which retries a
killed task forever. Handlers are idempotent, so resuming a job simply runs it again.
"""
import os
import socket
import traceback
from datetime import datetime, timedelta, timezone

from django.db import (InterfaceError, OperationalError, close_old_connections, connection,
                       transaction)

from .. import settings
from ..models import Job
from . import threaddump, waiting
from .handle import JobCancelled, JobHandle, log_dir_for
from .handlers import HANDLERS
from .waiting import WAIT_EXCEPTIONS


def _now():
    return datetime.now(timezone.utc)


def stale(job, now=None):
    """A running job whose worker stopped beating: taken for dead."""
    now = now or _now()
    limit = timedelta(seconds=settings.HEARTBEAT_TIMEOUT)
    return job.state == Job.RUNNING and (job.heartbeat is None or now - job.heartbeat > limit)


def claim(job_id, now=None):
    """Mark the job RUNNING for this worker and return it, or None if it must not run."""
    from .queue import blocker, claim_lock

    now = now or _now()
    with transaction.atomic():
        claim_lock()
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.cancel_requested:
            return None
        runnable = (job.state == Job.QUEUED
                    or (job.state == Job.WAITING and (job.next_check or now) <= now)
                    or stale(job, now))
        if not runnable:
            return None
        reason = blocker(job)
        if reason:
            if job.state != Job.QUEUED or job.wait_reason != reason:
                job.state, job.wait_reason = Job.QUEUED, reason
                job.save(update_fields=["state", "wait_reason"])
            return None
        if job.attempts >= settings.MAX_ATTEMPTS:
            job.state, job.finished = Job.FAILED, now
            job.error = (f"gave up after {job.attempts} attempts (a worker died each time?); "
                         "see the job log, then retry")
            job.save()
            transaction.on_commit(lambda: _mail_failed(job, job.error))
            return None
        job.attempts += 1  # given back by a run that ends waiting (tasks/waiting.py)
        job.state, job.wait_reason, job.heartbeat = Job.RUNNING, "", now
        job.worker = f"{socket.gethostname()}:{os.getpid()}"
        job.started = job.started or now
        job.log_dir = job.log_dir or log_dir_for(job)
        job.save()
    return job


def _app_database_lost(exc):
    """True when `exc` came from the app database's connection breaking (not from a
    query that failed on a working connection); the broken connection is closed."""
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    if connection.connection is not None and connection.is_usable():
        return False
    connection.close()
    return True


def _finish(job, state, **fields):
    fields.update(state=state, heartbeat=None)
    if state in (Job.DONE, Job.FAILED, Job.CANCELLED):
        fields["finished"] = _now()
    # Only while this worker still owns the job (the monitor may have handed it on).
    Job.objects.filter(pk=job.pk, worker=job.worker).update(**fields)


def _mail_failed(job, error):
    from .notify import job_failed

    job_failed(job, error)


def run_job(job_id):
    """django-q2 entry point. Returns the job's final state (for django-q2's result)."""
    close_old_connections()
    threaddump.register()  # a support bundle can ask this worker for its threads
    job = claim(job_id)
    if job is None:
        return "not claimed"
    handle = JobHandle(job)
    with handle:
        handle.log(f"attempt {job.attempts} on {job.worker}"
                   + (" (resuming)" if job.attempts > 1 else ""))
        try:
            summary = HANDLERS[job.kind](job, handle) or {}
        except JobCancelled:
            handle.log("cancelled")
            _finish(job, Job.CANCELLED)
            state = Job.CANCELLED
        except WAIT_EXCEPTIONS as exc:
            handle.log(f"waiting: {exc}")
            waiting.enter(job, exc, _finish)
            state = Job.WAITING
        except Exception as exc:  # a job fails; the worker goes on with the next one
            if _app_database_lost(exc):
                # The app database went away under the job (restarted, its session
                # terminated): not the job's fault, and all it did is recorded. Queue it
                # again on a fresh connection: it resumes from its rows. (Were the
                # database still away, the monitor resumes it once its heartbeat is stale.)
                handle.log(f"app database connection lost ({type(exc).__name__}: {exc}); "
                           "queued again to resume")
                _finish(job, Job.QUEUED, wait_reason="app database connection lost; resuming")
                state = Job.QUEUED
            else:
                handle.error(f"{type(exc).__name__}: {exc}")
                handle.log(traceback.format_exc())
                cleared, _ = waiting.leave(job)
                _finish(job, Job.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], **cleared)
                state = Job.FAILED
                _mail_failed(job, str(exc))
        else:
            handle.log("done")
            cleared, waited = waiting.leave(job)
            if waited:
                summary = dict(summary, waited=waited)
            _finish(job, Job.DONE, summary=summary, wait_reason="", **cleared)
            state = Job.DONE
            from .notify import job_done, wait_over

            if waited:
                wait_over(job, waited)
            job_done(job, summary)
    from .queue import dispatch_ready

    dispatch_ready()  # whatever this job was holding up may run now
    return state
