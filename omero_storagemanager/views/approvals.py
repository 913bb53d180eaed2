"""Archive and restore requests in the API: users see theirs, admins and group owners
(where the preference group_owners_manage allows) approve or decline their groups'."""
from .. import permissions
from ..models import Location, Request
from ..permissions import may_withdraw
from ..tasks import approvals, notify
from . import serialize
from .common import api, bad, conflict, forbidden, json_body, not_found


def visible_requests(who):
    return permissions.visible_requests(who.access, Request.objects.select_related("collection"))


def pending_to_decide(who):
    """How many pending requests this user may decide (the count in the tab header)."""
    query = Request.objects.filter(state=Request.PENDING)
    if not who.admin:
        query = query.filter(collection__group_id__in=who.access.leader_of)
    return query.count()


@api()
def requests(request, who):
    """?state=pending|decided|all (default pending), ?mine=1 for the user's own requests;
    newest first, at most 500."""
    which = request.GET.get("state", "pending")
    query = visible_requests(who).select_related("job")
    mine = request.GET.get("mine", "")
    if mine not in ("", "0", "1"):
        raise bad("mine must be 0 or 1")
    if mine == "1":
        query = query.filter(requested_by_id=who.user_id)
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
        data["may_withdraw"] = may_withdraw(who.access, found)
        items.append(data)
    return {"items": items, "emails": notify.mail_configured()}


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


@api(methods=("POST",))
def withdraw(request, who, pk):
    """The requester takes back a pending request."""
    found = visible_requests(who).filter(pk=pk).first()
    if found is None:
        raise not_found(f"no request {pk} that you may see")
    if found.requested_by_id != who.user_id:
        raise forbidden("only the user who asked withdraws a request")
    if not may_withdraw(who.access, found):
        raise conflict(f"request {pk} was already {found.state}")
    try:
        withdrawn = approvals.withdraw(found, who.who)
    except approvals.RequestConflict as exc:
        raise conflict(str(exc)) from None
    return {"request": serialize.request_data(withdrawn)}
