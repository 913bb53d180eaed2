"""Archive and restore requests in the API: users see theirs, admins and group owners
(where the preference group_owners_manage allows) approve or decline their groups'."""
from .. import permissions
from ..models import Location, Request
from ..tasks import approvals
from . import serialize
from .common import api, bad, conflict, forbidden, json_body, not_found


def visible_requests(who):
    return permissions.visible_requests(who.access, Request.objects.select_related("collection"))


@api()
def requests(request, who):
    """?state=pending|decided|all (default pending); newest first, at most 500."""
    which = request.GET.get("state", "pending")
    query = visible_requests(who)
    if which == "pending":
        query = query.filter(state=Request.PENDING)
    elif which == "decided":
        query = query.exclude(state=Request.PENDING)
    elif which != "all":
        raise bad("state must be pending, decided or all")
    items = []
    for found in query.order_by("-created", "-pk")[:500]:
        data = serialize.request_data(found)
        data["may_decide"] = found.state == Request.PENDING and who.access.may_decide(found)
        items.append(data)
    return {"items": items}


def _decide(request, who, pk, approve):
    body = json_body(request)
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 2000:
        raise bad("comment must be text of at most 2000 characters")
    found = visible_requests(who).filter(pk=pk).first()
    if found is None:
        raise not_found(f"no request {pk} that you may see")
    if not who.access.may_decide(found):
        raise forbidden("only administrators and the group's owners decide requests")
    if approve and found.kind == Request.ARCHIVE and not Location.objects.filter(
            current=True).exists():
        raise conflict("there is no current archive location: add one first "
                       "(Storage > Admin > Locations)")
    try:
        decided = approvals.decide(found, approve, who.who, comment)
    except approvals.RequestConflict as exc:
        raise conflict(str(exc)) from None
    return {"request": serialize.request_data(decided)}


@api(methods=("POST",))
def approve(request, who, pk):
    return _decide(request, who, pk, True)


@api(methods=("POST",))
def decline(request, who, pk):
    return _decide(request, who, pk, False)
