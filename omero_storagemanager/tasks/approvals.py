"""The approval queue: users ask for an archive or a restore, an admin (or the group's
owner) approves or declines, and the requester is told by e-mail.

With the preference require_approval off nothing waits: the job is submitted at once.
An approved request submits its job on the requester's behalf (requested_by = the
requester), so the job's e-mails and history name who asked for it.
"""
from datetime import datetime, timezone

from django.db import transaction

from .. import preferences
from ..models import Request
from . import notify
from .queue import submit


class RequestConflict(ValueError):
    """The request cannot be made or decided as asked (the message says why)."""


def ask(kind, collections, requested_by, comment=""):
    """Record a request per collection, or submit the job at once when approval is off.

    requested_by: (OMERO user id, name). Returns ("requests", [Request]) or ("job", Job).
    """
    if kind not in (Request.ARCHIVE, Request.RESTORE):
        raise RequestConflict(f"only archive and restore can be requested, not {kind!r}")
    if not preferences.get("require_approval"):
        return "job", submit(kind, collections, requested_by=requested_by,
                             params={"requested": True})
    pending = Request.objects.filter(collection__in=collections, kind=kind,
                                     state=Request.PENDING).select_related("collection")
    if pending:
        raise RequestConflict("already requested, waiting for approval: "
                              + ", ".join(r.collection.key for r in pending))
    with transaction.atomic():
        made = [Request.objects.create(kind=kind, collection=c, requested_by_id=requested_by[0],
                                       requested_by_name=requested_by[1], comment=comment[:2000])
                for c in collections]
    keys = ", ".join(c.key for c in collections)
    notify.send("question", f"{requested_by[1]} asks to {kind} {keys}",
                f"{requested_by[1]} (OMERO user {requested_by[0]}) asks to {kind}:\n\n"
                + "\n".join(f"  {c.key} {c.name}" for c in collections)
                + (f"\n\nComment: {comment}\n" if comment else "\n")
                + "\nApprove or decline it in OMERO.web: Storage > Admin > Requests.\n")
    return "requests", made


def decide(request, approve, decided_by, comment=""):
    """Approve (submit the job for the requester) or decline a pending request, and tell
    the requester. decided_by: (OMERO user id, name)."""
    with transaction.atomic():
        request = Request.objects.select_for_update().select_related("collection").get(
            pk=request.pk)
        if request.state != Request.PENDING:
            raise RequestConflict(f"request {request.pk} was already {request.state}")
        request.state = Request.APPROVED if approve else Request.DECLINED
        request.decided_by_id, request.decided_by_name = decided_by
        request.decision_comment = comment[:2000]
        request.decided = datetime.now(timezone.utc)
        if approve:
            request.job = submit(request.kind, [request.collection],
                                 requested_by=(request.requested_by_id,
                                               request.requested_by_name),
                                 params={"request": request.pk})
        request.save()
    verdict = "approved" if approve else "declined"
    key = request.collection.key
    body = (f"Your request to {request.kind} {key} ({request.collection.name}) was {verdict} "
            f"by {decided_by[1]}.\n"
            + (f"\nComment: {comment}\n" if comment else "")
            + (f"\nJob {request.job.pk} is queued; follow it in OMERO.web under Storage > Jobs.\n"
               if approve else ""))
    notify.send("info", f"{request.kind} of {key} {verdict}", body,
                notify.emails_of([request.requested_by_id]))
    return request


def withdraw(request, withdrawn_by):
    """The requester takes back a pending request; the deciders are not asked any more.
    withdrawn_by: (OMERO user id, name)."""
    with transaction.atomic():
        request = Request.objects.select_for_update().select_related("collection").get(
            pk=request.pk)
        if request.state != Request.PENDING:
            raise RequestConflict(f"request {request.pk} was already {request.state}")
        request.state = Request.WITHDRAWN
        request.decided_by_id, request.decided_by_name = withdrawn_by
        request.decided = datetime.now(timezone.utc)
        request.save()
    return request


def fate(request):
    """What became of a request, in the requester's words: pending, declined, withdrawn,
    or once approved its job's state (queued, running, waiting, failed, cancelled) and
    at last done."""
    if request.state != Request.APPROVED:
        return request.state
    if request.job_id is None:
        return "approved"
    return request.job.state
