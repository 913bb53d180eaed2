"""Usage per user and per group, and who is over quota.

Online bytes come from the OMERO database with each file counted once per user (or
group) however many of their collections hold it; archived and purged bytes from the
app's own records of copies and purges.
"""
from collections import Counter, defaultdict

from django.db.models import Sum

from ..catalog.totals import union_totals
from ..models import Collection, Copy, Quota


def quota_for(scope, omero_id, quotas=None):
    """The quota in bytes of a user or group: its exception, else the default, else None."""
    quotas = quotas if quotas is not None else {(q.scope, q.omero_id): q.max_bytes
                                                for q in Quota.objects.all()}
    return quotas.get((scope, omero_id), quotas.get((scope, None)))


def _names(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT id, omename FROM experimenter")
        users = dict(cur.fetchall())
        cur.execute("SELECT id, name FROM experimentergroup")
        groups = dict(cur.fetchall())
    return users, groups


def usage_statistics(conn, include_attachments=True):
    live = list(Collection.objects.filter(gone=False))
    purged_keys = [c.key for c in live if c.state == Collection.PURGED]
    quotas = {(q.scope, q.omero_id): q.max_bytes for q in Quota.objects.all()}
    names = dict(zip(("user", "group"), _names(conn)))
    archived = defaultdict(Counter)
    for row in (Copy.objects.filter(state=Copy.VERIFIED)
                .values("collection__owner_id", "collection__group_id")
                .annotate(total=Sum("bytes"))):
        archived["user"][row["collection__owner_id"]] += row["total"] or 0
        archived["group"][row["collection__group_id"]] += row["total"] or 0
    result = {}
    for scope, by, attr in (("user", "owner", "owner_id"), ("group", "group", "group_id")):
        online = union_totals(conn, by, exclude=purged_keys,
                              include_attachments=include_attachments)
        counts = Counter(getattr(c, attr) for c in live)
        purged = Counter()
        for c in live:
            if c.state == Collection.PURGED:
                purged[getattr(c, attr)] += c.bytes
        entries = []
        for who in sorted(set(counts) | {oid for (s, oid) in quotas if s == scope and oid}):
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
