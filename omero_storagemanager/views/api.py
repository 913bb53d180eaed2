"""The JSON API of the Storage tab (docs/api.md): status, the collections list and one
collection, actions on collections, statistics. Every answer is decided for the
signed-in user by permissions.Access, here on the server.
"""
from django.db.models import Sum
from django.db.models.functions import TruncMonth
from django.urls import reverse

from ..catalog.collections import parse_key
from ..catalog.objects import sharing_collections
from ..engine.stats import quota_for, usage_statistics
from ..models import Collection, Copy, Job, Location
from ..catalog.people import members_of
from ..permissions import ACTIONS, may_try, usage_people
from ..tasks import approvals, notify
from ..tasks.queue import JobRefused, submit
from . import serialize
from .buttons import blocked_actions, with_reasons
from .common import ApiError, api, bad, conflict, forbidden, json_body, not_found
from .listing import collections_page
from .status import status

MAX_TARGETS = 500
SCAN_MODES = ("catalog", "stat", "verify")


@api()
def root(request, who):
    """A map of the API for scripts (see docs/api.md for each endpoint)."""
    base = reverse("storagemanager_api_root")
    return {"version": 1, "docs": "docs/api.md in omero-storagemanager",
            "openapi": base + "openapi.json",
            "endpoints": {name: base + path for name, path in (
                ("status", "status/"), ("usage", "usage/"), ("collections", "collections/"),
                ("collection", "collections/<Project:1>/"), ("actions", "actions/"),
                ("objects", "objects/<type>/<id>/"), ("breakdown", "breakdown/"),
                ("statistics", "statistics/"), ("jobs", "jobs/"), ("requests", "requests/"),
                ("admin", "admin/"))}}


@api()
def api_status(request, who):
    return status(who)


@api()
def usage(request, who):
    """The signed-in user's own usage against their quota."""
    stats = usage_statistics(who.catalog())
    mine = next((u for u in stats["users"] if u["id"] == who.user_id), None)
    if mine is None:
        mine = {"id": who.user_id, "name": who.user_name, "collections": 0,
                "online_files": 0, "online_bytes": 0, "archived_bytes": 0, "purged_bytes": 0,
                "quota_bytes": quota_for("user", who.user_id), "over_quota": False}
    return {"user": mine}


@api()
def collections(request, who):
    page = collections_page(who.access, request.GET)
    jobs = serialize.latest_jobs([c.pk for c in page["items"]])
    blocked, pending = blocked_actions(page["items"])
    page["items"] = [with_reasons(serialize.collection_row(c, who.access, jobs.get(c.pk)),
                                  blocked.get(c.pk, {}), pending.get(c.pk, []))
                     for c in page["items"]]
    return page


def find_collection(who, key):
    """The collection named by key, if this user may see it (404 otherwise: whether it
    exists is nobody else's business)."""
    try:
        kind, oid = parse_key(key)
    except ValueError as exc:
        raise bad(str(exc)) from None
    found = Collection.objects.filter(kind=kind, omero_id=oid).first()
    if found is None or not who.access.can_see(found):
        raise not_found(f"no {kind.capitalize()}:{oid} that you may see")
    return found


@api()
def collection(request, who, key):
    found = find_collection(who, key)
    try:
        shared = sharing_collections(who.catalog(), found.kind, found.omero_id)
    except ApiError:
        shared = None  # OMERO database down: the rest still answers
    return serialize.collection_detail(found, who.access, shared)


# -- actions ---------------------------------------------------------------------------

def _state_conflict(kind, c, direct):
    """Why `kind` cannot be done to c now (409), or None."""
    purged = c.state in (Collection.PURGED, Collection.PARTIALLY_PURGED)
    if c.gone:
        return f"{c.key} was deleted in OMERO"
    if kind == "restore" and not purged:
        return f"{c.key} is {c.state}: there is nothing to restore"
    if kind == "archive" and c.state == Collection.PURGED:
        return f"{c.key} is purged: its files are in the archive already"
    if kind == "purge":
        if c.state == Collection.PURGED:
            return f"{c.key} is purged already"
        if not Copy.objects.filter(collection=c, state=Copy.VERIFIED).exists():
            return f"{c.key} has no verified copy yet: archive it first"
    busy = Job.objects.filter(collections=c, kind=kind, state__in=Job.ACTIVE).first()
    if busy is not None and direct:
        return f"{c.key} already has {kind} job {busy.pk} ({busy.state})"
    return None


def _targets(who, body):
    keys = body.get("collections")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise bad('collections must be a non-empty list such as ["Project:1", "Screen:2"]')
    if len(keys) > MAX_TARGETS:
        raise bad(f"at most {MAX_TARGETS} collections at once")
    found, seen = [], set()
    for key in keys:
        c = find_collection(who, key)
        if c.pk not in seen:
            seen.add(c.pk)
            found.append(c)
    return found


@api(methods=("POST",))
def actions(request, who):
    """Scan, archive, purge or restore collections, or ask for an archive or restore."""
    body = json_body(request)
    action = body.get("action")
    if action not in ACTIONS:
        raise bad(f"action must be one of {', '.join(ACTIONS)}")
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 2000:
        raise bad("comment must be text of at most 2000 characters")
    mode = body.get("mode", "stat")
    if mode not in SCAN_MODES:  # refused for any action: a typo must not pass silently
        raise bad(f"mode must be one of {', '.join(SCAN_MODES)}")
    targets = _targets(who, body)
    access = who.access
    kind = action.replace("request_", "")
    for c in targets:
        if not may_try(access, kind, c):
            if kind == "purge" and c.owner_id == access.user_id:
                raise forbidden("purging is for OMERO administrators and group owners")
            raise forbidden(f"you may not {kind} {c.key}: it is not yours")
    direct = all(access.may(kind, c) for c in targets)
    for c in targets:
        problem = _state_conflict(kind, c, direct)
        if problem:
            raise conflict(problem)
    if direct:  # also a request the user may simply do (approval off, or a manager)
        return {"job": _submit(kind, targets, who, mode)}, 202
    if kind in ("archive", "restore") and all(access.may("request_" + kind, c)
                                              for c in targets):
        if action == kind:
            raise forbidden(f"{kind} needs an administrator's approval: send "
                            f"request_{kind} instead")
        try:
            made, result = approvals.ask(kind, targets, who.who, comment)
        except approvals.RequestConflict as exc:
            raise conflict(str(exc)) from None
        if made == "job":
            return {"job": serialize.job_full(result, who.admin)}, 202
        return {"requests": [serialize.request_data(r) for r in result],
                "emails": notify.mail_configured()}, 202
    refused = next(c for c in targets if not access.may(kind, c))
    raise forbidden(f"you may not {kind} {refused.key}")


def _submit(kind, targets, who, mode):
    location = None
    if kind == "archive":
        location = Location.objects.filter(current=True).first()
        if location is None:
            raise conflict("there is no current archive location: an administrator must "
                           "add one (Storage > Admin > Locations)")
    params = {"mode": mode} if kind == "scan" else {}
    try:
        job = submit(kind, targets, location, params, requested_by=who.who)
    except JobRefused as exc:
        raise conflict(str(exc)) from None
    return serialize.job_full(job, who.admin, [c.key for c in targets])


# -- statistics ------------------------------------------------------------------------

@api()
def statistics(request, who):
    """Usage per user and group with quotas, usage by group, and growth over time.

    Admins see everyone; group owners their groups and members; others themselves and
    their groups' totals."""
    access = who.access
    stats = usage_statistics(who.catalog())
    people = usage_people(access, members_of(who.catalog(), access.leader_of))
    if people is not None:
        mine = [u for u in stats["users"] if u["id"] == who.user_id]
        others = []
        if people - {who.user_id}:
            # Members' usage in the groups this user owns only, not in their other groups.
            led = usage_statistics(who.catalog(), groups=access.leader_of,
                                   people=people - {who.user_id})
            others = [u for u in led["users"] if u["id"] in people and u["id"] != who.user_id]
        stats["users"] = sorted(mine + others, key=lambda u: u["id"])
        stats["groups"] = [g for g in stats["groups"] if g["id"] in access.member_of]
    months = (access.visible(Collection.objects.filter(gone=False, created__isnull=False))
              .annotate(month=TruncMonth("created")).values("month")
              .annotate(total=Sum("bytes")).order_by("month"))
    running, timeline = 0, []
    for row in months:
        running += row["total"] or 0
        timeline.append({"month": row["month"].strftime("%Y-%m"), "bytes": row["total"] or 0,
                         "cumulative_bytes": running})
    return {"users": stats["users"], "groups": stats["groups"], "timeline": timeline}
