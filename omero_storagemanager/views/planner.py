"""Capacity planning in the API: the recorded usage history and the projection of when
the primary storage fills (GET capacity/), and the what-if planner (admins): a rule in
the collections filter's language, what it matches, the bytes a purge would free, the
copies there are and those still needed, the date the projection moves to, and one step
to queue it all (archive what lacks copies, then purge once verified)."""
from datetime import timedelta

from django.db.models import Count

from .. import preferences
from ..engine import usage as capacity
from ..models import Collection, Copy, Job, Location, UsageRecord
from ..tasks.queue import JobRefused, submit
from .common import api, bad, conflict, json_body
from .listing import annotate
from .rules import RuleError, rule_columns, rules_condition

MAX_LISTED = 200
WINDOWS = (30, 90, 180, 365, 730)


def _window(text):
    if text is None or text == "":
        return 90
    if not str(text).isdigit() or int(text) not in WINDOWS:
        raise bad(f"window must be one of {', '.join(map(str, WINDOWS))} (days)")
    return int(text)


@api()
def capacity_view(request, who):
    """?window=30|90|180|365|730 (days, default 90): the usage history of the primary
    storage, the groups, users and locations this user may see, and the projection."""
    window = _window(request.GET.get("window"))
    access = who.access
    since = capacity.date.today() - timedelta(days=window)
    groups = users = None
    if not access.admin:
        groups = sorted(set(access.member_of) | set(access.leader_of))
        users = [who.user_id]
    answer = {"window_days": window,
              "groups": capacity.history(UsageRecord.GROUP, since, groups),
              "users": capacity.history(UsageRecord.USER, since, users)}
    if access.admin:
        answer["primary"] = capacity.history(UsageRecord.PRIMARY, since)
        answer["locations"] = capacity.history(UsageRecord.LOCATION, since)
        answer["projection"] = capacity.projection(window)
    return answer


def _rules(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(r, str) for r in value):
        raise bad('rules must be a rule or a list of rules, e.g. ["last access before '
                  '2 years ago", "size above 100 GiB"]')
    return value


def matching(rules):
    """The online (not purged) collections every rule matches, largest first."""
    try:
        condition = rules_condition(rules)
        needed = rule_columns(rules)
    except RuleError as exc:
        raise bad(str(exc)) from None
    queryset = (Collection.objects.filter(gone=False).exclude(state=Collection.PURGED)
                .filter(files__gt=0))
    return list(annotate(queryset, needed).filter(condition).order_by("-bytes", "pk"))


def plan(rules, window):
    found = matching(rules)
    required = preferences.get("copies_required")
    copies = dict(Copy.objects.filter(collection__in=found, state=Copy.VERIFIED)
                  .values("collection").annotate(n=Count("location", distinct=True))
                  .values_list("collection", "n"))
    items, totals = [], {"collections": len(found), "bytes": 0, "shared_bytes": 0,
                         "to_archive_bytes": 0, "copies_existing": 0, "copies_needed": 0}
    for c in found:
        have = copies.get(c.pk, 0)
        need = max(0, required - have)
        totals["bytes"] += c.bytes
        totals["shared_bytes"] += min(c.shared_bytes, c.bytes)
        totals["copies_existing"] += have
        totals["copies_needed"] += need
        if need:
            totals["to_archive_bytes"] += c.bytes
        if len(items) < MAX_LISTED:
            items.append({"key": c.key, "name": c.name, "owner": c.owner_name,
                          "group": c.group_name, "state": c.state, "bytes": c.bytes,
                          "shared_bytes": c.shared_bytes, "last_access": c.last_access,
                          "copies": have, "copies_needed": need})
    # Files shared with collections outside the set may stay: what is sure to be freed
    # excludes them, what may be freed includes them.
    totals["freed_at_least_bytes"] = totals["bytes"] - totals["shared_bytes"]
    totals["freed_up_to_bytes"] = totals["bytes"]
    now = capacity.projection(window)
    after = capacity.projection(window, freed_bytes=totals["freed_at_least_bytes"])
    used = now.get("used_bytes")
    totals["freed_fraction_of_used"] = (totals["freed_at_least_bytes"] / used) if used else None
    # The share of OMERO's online data (what the collections hold), the part of the
    # primary storage that archiving and purging can act on.
    online = capacity.collection_totals(Collection.objects.all())["bytes"]
    totals["online_bytes"] = online
    totals["freed_fraction_of_online"] = (totals["freed_at_least_bytes"] / online) if online else None
    return {"rules": rules, "copies_required": required, "totals": totals, "items": items,
            "listed": len(items), "projection_now": now, "projection_after": after}


@api(admin=True)
def planner(request, who):
    """?rule=...(repeated)&window=: what the rules would free (nothing is changed)."""
    return plan(_rules(request.GET.getlist("rule")), _window(request.GET.get("window")))


@api(methods=("POST",), admin=True)
def planner_queue(request, who):
    """{"rules": [...]}: one step: purge what has its copies already; archive the rest
    in one job that, once its copies are verified, queues their purge (tasks/plans.py).
    The same checks as the actions endpoint apply: admins only, no collection busy."""
    body = json_body(request)
    rules = _rules(body.get("rules"))
    found = matching(rules)
    if not found:
        raise conflict("the rules match no online collection")
    required = preferences.get("copies_required")
    copies = dict(Copy.objects.filter(collection__in=found, state=Copy.VERIFIED)
                  .values("collection").annotate(n=Count("location", distinct=True))
                  .values_list("collection", "n"))
    busy = Job.objects.filter(collections__in=found, state__in=Job.ACTIVE,
                              kind__in=("archive", "purge")).first()
    if busy is not None:
        raise conflict(f"job {busy.pk} ({busy.kind}, {busy.state}) already works on some "
                       "of these collections: wait for it or narrow the rules")
    ready = [c for c in found if copies.get(c.pk, 0) >= required]
    to_copy = [c for c in found if copies.get(c.pk, 0) < required]
    jobs = []
    try:
        if to_copy:
            location = Location.objects.filter(current=True).first()
            if location is None:
                raise conflict("there is no current archive location: add one first "
                               "(Storage > Admin > Locations)")
            made = submit("archive", to_copy, location, {"then_purge": True, "plan": rules},
                          requested_by=who.who)
            jobs.append({"id": made.pk, "kind": "archive", "state": made.state,
                         "collections": [c.key for c in to_copy]})
        if ready:
            made = submit("purge", ready, params={"plan": rules}, requested_by=who.who)
            jobs.append({"id": made.pk, "kind": "purge", "state": made.state,
                         "collections": [c.key for c in ready]})
    except JobRefused as exc:
        raise conflict(str(exc)) from None
    return {"jobs": jobs, "archive_then_purge": [c.key for c in to_copy],
            "purge_now": [c.key for c in ready]}, 202
