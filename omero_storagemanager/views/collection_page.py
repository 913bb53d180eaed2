"""One collection on one page (/storagemanager/collection/Project:12/): its figures and
how old they are, its files (paged), copies, jobs, requests and the history of its
states, so an admin or its owner sees everything about it in one place. The figures,
copies and requests come from collections/<key>/ (serialize.collection_detail); this
module adds the files and the history."""
from django.urls import reverse

from .. import settings
from ..catalog.collections import UnknownCollection
from ..catalog.inventory import InventoryReader
from ..catalog.paths import RepositoryPaths
from ..models import Job, Request
from . import serialize
from .api import find_collection
from .common import api, bad, not_found, page

MAX_PER_PAGE = 500
# The stored states a finished job leaves the collection in, for the history.
# A restore leaves the verified copies in place: the collection is archived again.
STATE_AFTER = {"archive": "archived", "purge": "purged", "restore": "archived"}


@page("omero_storagemanager/collection.html")
def collection_page(request, who, key):
    c = find_collection(who, key)  # 404 page for a collection this user may not see
    return {"sm_page": "collections", "collection": c,
            "api_detail": reverse("storagemanager_api_collection", args=[c.key])}


def _int(request, name, default, low, high):
    text = request.GET.get(name, str(default))
    if not text.isdigit() or not low <= int(text) <= high:
        raise bad(f"{name} must be a whole number from {low} to {high}")
    return int(text)


@api()
def files(request, who, key):
    """?page=&per_page=: the collection's files as OMERO records them, in path order.
    Paths are relative to the binary repository (the full path for admins)."""
    c = find_collection(who, key)
    number = _int(request, "page", 1, 1, 10**9)
    per_page = _int(request, "per_page", 100, 1, MAX_PER_PAGE)
    paths = RepositoryPaths(settings.data_dir(), settings.managed_dir())
    try:
        inventory = InventoryReader(who.catalog(), paths, settings.INCLUDE_ATTACHMENTS).read(
            c.kind, c.omero_id)
    except UnknownCollection:
        raise not_found(f"{c.key} is not in OMERO any more") from None
    found = sorted(inventory.files, key=lambda f: f.path)
    root = settings.data_dir().rstrip("/") + "/"
    start = (number - 1) * per_page
    items = [{"path": f.path if who.admin else f.path.removeprefix(root), "kind": f.kind,
              "size": f.size, "fileset_id": f.fileset_id, "shared_with": f.shared_with}
             for f in found[start:start + per_page]]
    return {"items": items, "total": len(found), "page": number, "per_page": per_page,
            "pages": max(1, -(-len(found) // per_page)),
            "bytes": sum(f.size or 0 for f in found)}


@api()
def history(request, who, key):
    """The collection's jobs (newest first, at most 50), its scans and a time line of
    what happened to it: created, scanned, requested, decided, jobs and the state each
    finished job left it in."""
    c = find_collection(who, key)
    jobs = list(Job.objects.filter(collections=c).select_related("location")
                .order_by("-created")[:50])
    scans = list(c.scans.order_by("-started")[:20])
    requests = list(Request.objects.filter(collection=c).select_related("job")
                    .order_by("-created")[:50])
    events = []
    if c.created:
        events.append({"at": c.created, "what": f"created in OMERO by {c.owner_name}",
                       "state": "online"})
    for s in scans:
        events.append({"at": s.finished or s.started, "what": f"{s.mode} scan: "
                       f"{s.figures.get('files', 0)} files, {s.figures.get('bytes', 0)} bytes"
                       + (f", {len(s.errors)} problems" if s.errors else ""),
                       "state": None})
    for r in requests:
        events.append({"at": r.created, "what": f"{r.requested_by_name} asked to {r.kind}",
                       "state": None})
        if r.decided:
            events.append({"at": r.decided, "what": f"request {r.pk} {r.state}"
                           + (f" by {r.decided_by_name}" if r.state != Request.WITHDRAWN else ""),
                           "state": None})
    for j in jobs:
        events.append({"at": j.created, "what": f"{j.kind} job {j.pk} queued by "
                       f"{j.requested_by_name or 'the system'}", "state": None})
        if j.finished:
            done = j.state == Job.DONE
            events.append({"at": j.finished, "what": f"{j.kind} job {j.pk} {j.state}",
                           "state": STATE_AFTER.get(j.kind) if done else None})
    events.sort(key=lambda e: e["at"], reverse=True)
    return {"key": c.key, "state": c.state,
            "figures_measured": c.scanned_at, "figures_mode": c.scan_mode,
            "jobs": [serialize.job_full(j, who.admin) for j in jobs],
            "scans": [{"mode": s.mode, "started": s.started, "finished": s.finished,
                       "files": s.figures.get("files"), "bytes": s.figures.get("bytes"),
                       "problems": len(s.errors)} for s in scans],
            "events": events}
