"""Jobs in the API: the queue and history, one job, its log, cancel and retry.

Who sees a job: admins all; others the jobs they asked for and the jobs on collections
they may see. The log (paths, checksums) is for admins and the owners of the groups of
every collection the job touched; cancel for them and for whoever asked for the job;
retry for managers only (it runs the job again with the original requester's name).
"""
import os
import re

from .. import permissions
from ..models import Job
from ..tasks.queue import JobRefused, cancel, retry
from . import serialize
from .common import api, bad, conflict, forbidden, not_found

LOG_FILES = ("job.log", "files.txt", "errors.txt")
MAX_LOG_BYTES = 256 * 1024
MAX_PER_PAGE = 200


def visible_jobs(who):
    return permissions.visible_jobs(who.access, Job.objects.all())


def _job(who, pk):
    job = visible_jobs(who).filter(pk=pk).first()
    if job is None:
        raise not_found(f"no job {pk} that you may see")
    return job


def _manages(who, job):
    return permissions.manages_all(who.access, job.collections.all())


def job_data(who, job):
    """A job as this user may see it: the collections they may not see are not named."""
    keys = None if who.admin else permissions.visible_keys(who.access, job.collections.all())
    return serialize.job_full(job, who.admin, keys)


def _page_number(request, name, default, high):
    raw = request.GET.get(name, "")
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw) or not 1 <= int(raw) <= high:
        raise bad(f"{name} must be a whole number from 1 to {high}")
    return int(raw)


@api()
def jobs(request, who):
    """?state=active|history|all (default all), page, per_page: newest first."""
    which = request.GET.get("state", "all")
    if which not in ("active", "history", "all"):
        raise bad("state must be active, history or all")
    page = _page_number(request, "page", 1, 10**6)
    per_page = _page_number(request, "per_page", 50, MAX_PER_PAGE)
    query = visible_jobs(who)
    if which == "active":
        query = query.filter(state__in=Job.ACTIVE)
    elif which == "history":
        query = query.exclude(state__in=Job.ACTIVE)
    total = query.count()
    start = (page - 1) * per_page
    rows = list(query.select_related("location").prefetch_related("collections")
                .order_by("-pk")[start:start + per_page])
    items = []
    for job in rows:
        data = job_data(who, job)
        data["may_cancel"] = job.state in Job.ACTIVE and (
            job.requested_by_id == who.user_id or _manages(who, job))
        data["may_retry"] = job.state in (Job.FAILED, Job.CANCELLED) and _manages(who, job)
        data["may_read_log"] = _manages(who, job)
        items.append(data)
    return {"total": total, "page": page, "per_page": per_page,
            "pages": max(1, -(-total // per_page)), "items": items}


@api()
def job(request, who, pk):
    found = _job(who, pk)
    data = job_data(who, found)
    data["may_read_log"] = _manages(who, found)
    return data


@api()
def job_log(request, who, pk):
    """?file=job.log|files.txt|errors.txt: the last 256 KB of that file of the job log."""
    found = _job(who, pk)
    if not _manages(who, found):
        raise forbidden("job logs are for administrators and the owners of the group")
    name = request.GET.get("file", "job.log")
    if name not in LOG_FILES:
        raise bad(f"file must be one of {', '.join(LOG_FILES)}")
    path = os.path.join(found.log_dir, name) if found.log_dir else ""
    if not path or not os.path.isfile(path):
        return {"job": found.pk, "file": name, "text": "", "size": 0, "truncated": False}
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(max(0, size - MAX_LOG_BYTES))
        text = f.read().decode("utf-8", "replace")
    return {"job": found.pk, "file": name, "text": text, "size": size,
            "truncated": size > MAX_LOG_BYTES}


@api(methods=("POST",))
def job_cancel(request, who, pk):
    found = _job(who, pk)
    if not (found.requested_by_id == who.user_id or _manages(who, found)):
        raise forbidden("only who asked for a job, admins and group owners may cancel it")
    try:
        return {"job": job_data(who, cancel(found))}
    except JobRefused as exc:
        raise conflict(str(exc)) from None


@api(methods=("POST",))
def job_retry(request, who, pk):
    found = _job(who, pk)
    if not _manages(who, found):
        raise forbidden("only admins and group owners may retry a job")
    try:
        return {"job": job_data(who, retry(found))}
    except JobRefused as exc:
        raise conflict(str(exc)) from None
