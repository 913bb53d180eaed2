"""Usage per user and per group, and who is over quota.

Online bytes come from the OMERO database with each file counted once per user (or
group) however many of their collections hold it (online_usage: the one definition of
a user's or group's usage, which the statistics page, quotas and the daily usage
history all use); archived and purged bytes from the app's own records of copies and
purges.
"""
from collections import Counter, defaultdict

from django.db.models import Sum

from ..catalog.people import user_and_group_names
from ..catalog.totals import union_totals
from ..models import Collection, Copy, Quota


def quota_for(scope, omero_id, quotas=None):
    """The quota in bytes of a user or group: its exception, else the default, else None."""
    quotas = quotas if quotas is not None else {(q.scope, q.omero_id): q.max_bytes
                                                for q in Quota.objects.all()}
    return quotas.get((scope, omero_id), quotas.get((scope, None)))


def offline_keys(groups=None):
    """Keys of the collections whose files are not online usage: purged ones, deleted
    ones (gone), and with `groups`, those of other groups."""
    rows = Collection.objects.values_list("kind", "omero_id", "state", "gone", "group_id")
    return [f"{kind.capitalize()}:{oid}" for kind, oid, state, gone, gid in rows
            if state == Collection.PURGED or gone or (groups is not None and gid not in groups)]


def online_usage(conn, by, exclude, include_attachments=True):
    """{owner or group id: (files, bytes)} online, each file counted once per user ("owner")
    or group however many of their collections hold it; `exclude`: offline_keys()."""
    return union_totals(conn, by, exclude=exclude, include_attachments=include_attachments)


def usage_statistics(conn, include_attachments=True, groups=None, people=()):
    """{"users": [...], "groups": [...]}. groups: count only the collections of these
    groups (a group owner's view of their members); people: user ids listed even with
    nothing in them."""
    live = list(Collection.objects.filter(gone=False))
    if groups is not None:
        live = [c for c in live if c.group_id in groups]
    exclude = offline_keys(groups)
    quotas = {(q.scope, q.omero_id): q.max_bytes for q in Quota.objects.all()}
    names = dict(zip(("user", "group"), user_and_group_names(conn)))
    archived = defaultdict(Counter)
    copies = Copy.objects.filter(state=Copy.VERIFIED)
    if groups is not None:
        copies = copies.filter(collection__group_id__in=groups)
    for row in (copies.values("collection__owner_id", "collection__group_id")
                .annotate(total=Sum("bytes"))):
        archived["user"][row["collection__owner_id"]] += row["total"] or 0
        archived["group"][row["collection__group_id"]] += row["total"] or 0
    result = {}
    for scope, by, attr in (("user", "owner", "owner_id"), ("group", "group", "group_id")):
        online = online_usage(conn, by, exclude, include_attachments)
        counts = Counter(getattr(c, attr) for c in live)
        purged = Counter()
        for c in live:
            if c.state == Collection.PURGED:
                purged[getattr(c, attr)] += c.bytes
        entries = []
        listed = set(counts) | {oid for (s, oid) in quotas if s == scope and oid}
        for who in sorted(listed | (set(people) if scope == "user" else set())):
            files, nbytes = online.get(who, (0, 0))
            quota = quota_for(scope, who, quotas)
            entries.append({
                "id": who, "name": names[scope].get(who, f"#{who}"),
                "collections": counts.get(who, 0), "online_files": files,
                "online_bytes": nbytes, "archived_bytes": archived[scope].get(who, 0),
                "purged_bytes": purged.get(who, 0), "quota_bytes": quota,
                "over_quota": quota is not None and nbytes > quota,
            })
        result[scope + "s"] = entries
    return result
