"""Model rows as the JSON the API answers (docs/api.md describes each shape).

Paths on disk (mounts, log folders, the repository) are for admins only: the other
users see names, sizes and dates.
"""
from ..models import Collection, Copy, Job, Request, ScanResult
from ..permissions import visible_requests
from ..tasks import approvals, notify

PURGED_HELP = (
    "The files of this {kind} were moved to the archive to free space on OMERO's "
    "storage. OMERO still lists its images, but they cannot be viewed or downloaded "
    "until the data is restored; a key-value annotation on it says so in every OMERO "
    "client. {how}")


def progress(job):
    """0..1, or None while the totals are unknown."""
    if job.state == Job.DONE:
        return 1.0
    if job.bytes_total:
        return min(1.0, job.bytes_done / job.bytes_total)
    if job.files_total:
        return min(1.0, job.files_done / job.files_total)
    return None


def job_brief(job, admin=False):
    if job is None:
        return None
    from ..tasks.waiting import public_reason

    return {"id": job.pk, "kind": job.kind, "state": job.state, "progress": progress(job),
            "wait_reason": public_reason(job, admin), "wait_kind": job.wait_kind or None,
            "wait_since": job.wait_since, "error": job.error}


def job_full(job, admin=False, keys=None):
    data = job_brief(job, admin)
    data.update({
        "collections": keys if keys is not None else [c.key for c in job.collections.all()],
        "location": job.location.name if job.location_id else None,
        "requested_by": {"id": job.requested_by_id, "name": job.requested_by_name},
        "files_done": job.files_done, "files_total": job.files_total,
        "bytes_done": job.bytes_done, "bytes_total": job.bytes_total,
        "attempts": job.attempts, "created": job.created, "started": job.started,
        "finished": job.finished,
        "seconds": ((job.finished or _now()) - job.started).total_seconds()
        if job.started else None,
        "summary": job.summary, "cancel_requested": job.cancel_requested,
        "active": job.state in Job.ACTIVE,
    })
    data.update(_pace(job, data["seconds"], data["progress"]))
    if admin:
        data["log_dir"], data["worker"] = job.log_dir, job.worker
    return data


def _pace(job, seconds, fraction):
    """Rate (bytes, or files, per second) and seconds left, from the progress so far."""
    if not seconds or not fraction:
        return {"bytes_per_second": None, "files_per_second": None, "seconds_left": None}
    return {"bytes_per_second": job.bytes_done / seconds,
            "files_per_second": job.files_done / seconds,
            "seconds_left": (seconds / fraction - seconds) if fraction < 1 else 0.0}


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def latest_jobs(collection_ids):
    """{collection id: its latest job that was not cancelled}."""
    rows = (Job.collections.through.objects.filter(collection_id__in=collection_ids)
            .exclude(job__state=Job.CANCELLED).select_related("job")
            .order_by("collection_id", "-job_id").distinct("collection_id"))
    return {row.collection_id: row.job for row in rows}


def allowed_actions(c, access):
    """Access.actions without those the state makes pointless (archiving or purging what
    is purged already): the buttons a user sees are the ones that can work."""
    pointless = {"archive", "request_archive", "purge"} if c.state == Collection.PURGED else set()
    return [a for a in access.actions(c) if a not in pointless]


def collection_row(c, access, job=None):
    """One row of the collections list."""
    return {
        "key": c.key, "kind": c.kind, "id": c.omero_id, "name": c.name,
        "owner": {"id": c.owner_id, "name": c.owner_name},
        "group": {"id": c.group_id, "name": c.group_name},
        "state": getattr(c, "display_state", c.state), "stored_state": c.state,
        "files": c.files, "images": c.images, "bytes": c.bytes,
        "archived_bytes": getattr(c, "archived_bytes", None),
        "shared_bytes": c.shared_bytes, "newest_file": c.newest_file,
        "last_access": c.last_access, "last_scan": c.scanned_at, "created": c.created,
        "job": job_brief(job, access.admin), "actions": allowed_actions(c, access),
    }


def copy_data(copy, admin=False):
    data = {"id": copy.pk, "location": {"id": copy.location_id, "name": copy.location.name,
                                        "type": copy.location.type},
            "state": copy.state, "created": copy.created, "verified_at": copy.verified_at,
            "verified": copy.state == Copy.VERIFIED, "files": copy.files, "bytes": copy.bytes,
            "last_audit": copy.last_audit, "last_audit_ok": copy.last_audit_ok,
            "incremental": copy.parent_id is not None}
    if admin:
        data["bag_path"] = copy.bag_path
    return data


def request_data(request):
    return {"id": request.pk, "kind": request.kind, "state": request.state,
            "collection": {"key": request.collection.key, "name": request.collection.name,
                           "owner": request.collection.owner_name,
                           "group": request.collection.group_name},
            "requested_by": {"id": request.requested_by_id, "name": request.requested_by_name},
            "comment": request.comment, "created": request.created,
            "decided_by": ({"id": request.decided_by_id, "name": request.decided_by_name}
                           if request.decided_by_id is not None else None),
            "decision_comment": request.decision_comment, "decided": request.decided,
            "job": request.job_id, "fate": approvals.fate(request)}


def restore_help(c, actions):
    if c.state not in (Collection.PURGED, Collection.PARTIALLY_PURGED):
        return None
    if "restore" in actions:
        how = "Click Restore to bring the files back."
    elif "request_restore" in actions:
        how = ("Click Request restore: an administrator approves it and the files come "
               "back; " + ("you get an e-mail at each step." if notify.mail_configured()
                           else "follow it here and under My requests."))
    else:
        how = "Ask the owner or your OMERO administrator to restore it."
    return PURGED_HELP.format(kind=c.get_kind_display(), how=how)


def collection_detail(c, access, shared_with=None):
    """Everything the right-hand panel shows about one collection."""
    from .listing import annotate

    c = annotate(Collection.objects.filter(pk=c.pk), {"archived_bytes", "display_state"}).get()
    job = latest_jobs([c.pk]).get(c.pk)
    data = collection_row(c, access, job)
    from .buttons import blocked_actions, with_reasons

    blocked, pending = blocked_actions([c])
    with_reasons(data, blocked.get(c.pk, {}), pending.get(c.pk, []))
    copies = Copy.objects.filter(collection=c).exclude(state=Copy.WRITING).select_related(
        "location").order_by("created")
    data["copies"] = [copy_data(copy, access.admin) for copy in copies]
    # Only the requests this user may see (requests/ shows the same): not other users'
    # requests and their comments.
    mine = visible_requests(access, Request.objects.filter(collection=c))
    data["requests"] = [request_data(r) for r in mine.select_related("collection", "job")
                        .order_by("-created", "-pk")[:10]]
    if shared_with is not None:
        # Names only of the collections this user may see; the others by key.
        named = {x.key: x.name for x in access.visible(Collection.objects.filter(
            omero_id__in=[int(k.split(":")[1]) for k in shared_with]))}
        shared_with = [{"key": k, "name": named.get(k)} for k in shared_with]
    data["shared_with"] = shared_with
    data["restore_help"] = restore_help(c, data["actions"])
    data["gone"] = c.gone
    data["last_access_measured"] = last_access_measured(c)
    return data


def last_access_measured(c):
    """When the collection's last access time was last read from the disk; None when
    never: last_access is then not known, whatever its value."""
    return ScanResult.last_read_from_disk(c)
