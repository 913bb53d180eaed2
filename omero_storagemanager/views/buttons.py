"""Why an action the user may do cannot be done now: the reason a disabled button shows
as its tooltip, decided on the server for a whole page of collections in three queries
(the same conditions the actions endpoint refuses with a 409)."""
from ..models import Copy, Job, Request

NO_VERIFIED_COPY = "no verified copy yet: archive it first (purge deletes only what a verified copy holds)"


def blocked_actions(collections):
    """{collection pk: {action: reason}} for the actions a state or a pending request
    makes impossible now, and {collection pk: [pending request]} for the badges."""
    ids = [c.pk for c in collections]
    if not ids:
        return {}, {}
    verified = set(Copy.objects.filter(collection_id__in=ids, state=Copy.VERIFIED)
                   .values_list("collection_id", flat=True).distinct())
    pending = {}
    for r in (Request.objects.filter(collection_id__in=ids, state=Request.PENDING)
              .order_by("created").values("pk", "collection_id", "kind", "created",
                                          "requested_by_name")):
        pending.setdefault(r["collection_id"], []).append(
            {"id": r["pk"], "kind": r["kind"], "created": r["created"],
             "requested_by": r["requested_by_name"]})
    busy = {}
    for row in (Job.collections.through.objects
                .filter(collection_id__in=ids, job__state__in=Job.ACTIVE)
                .values("collection_id", "job_id", "job__kind", "job__state")):
        busy.setdefault(row["collection_id"], {})[row["job__kind"]] = (row["job_id"],
                                                                       row["job__state"])
    blocked = {}
    for pk in ids:
        reasons = {}
        if pk not in verified:
            reasons["purge"] = NO_VERIFIED_COPY
        for r in pending.get(pk, []):
            reasons["request_" + r["kind"]] = (
                f"request {r['id']} ({r['requested_by']}) is waiting for approval since "
                f"{r['created']:%Y-%m-%d}")
        for kind, (job_id, state) in busy.get(pk, {}).items():
            reasons[kind] = f"{kind} job {job_id} is {state}"
            reasons.setdefault("request_" + kind, f"{kind} job {job_id} is {state}")
        blocked[pk] = reasons
    return blocked, pending


def with_reasons(row, reasons, pending):
    """Adds to a serialized row the reason of each of its actions that cannot run now
    (`disabled`) and its pending requests."""
    row["disabled"] = {a: reasons[a] for a in row["actions"] if a in reasons}
    row["pending_requests"] = pending
    return row
