"""The number of collections per group, owner and kind that triggers keep (CollectionCount,
migration 0016), from which the collections list takes its total when nothing filters it.

It must equal a count of the Collection rows not gone after any sequence of writes,
however the code makes them (create, bulk_create, save, a queryset update of group,
owner, kind or gone, a scan's update of figures only, delete, TRUNCATE: a Hypothesis
property), and the list's total must equal a count of the rows the user may see.
"""
from collections import Counter

from django.db import connection
from django.test import RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omero_storagemanager.models import Collection, CollectionCount
from omero_storagemanager.views.listing import collections_page

GROUPS, OWNERS, KINDS = (3, 4), (2, 5, 6), ("project", "screen")


def _kept():
    return Counter({(g, o, k): n for g, o, k, n in CollectionCount.objects.values_list(
        "group_id", "owner_id", "kind", "n") if n})


def _truth():
    return Counter(Collection.objects.filter(gone=False).values_list(
        "group_id", "owner_id", "kind"))


OPERATIONS = st.lists(st.tuples(
    st.sampled_from(["create", "bulk_create", "save", "chgrp", "chown", "kind", "gone",
                     "back", "figures", "delete", "delete_many", "truncate"]),
    st.integers(0, 30), st.sampled_from(GROUPS), st.sampled_from(OWNERS),
    st.sampled_from(KINDS)),
    min_size=1, max_size=25)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_kept_counts_equal_the_rows_after_any_writes(app_db, operations):
    with connection.cursor() as cur:
        cur.execute("TRUNCATE storagemanager_collection CASCADE")
    serial = 0
    for op, pick, group, owner, kind in operations:
        rows = list(Collection.objects.order_by("pk"))
        target = rows[pick % len(rows)] if rows else None
        serial += 1
        if op == "create" or target is None:
            Collection.objects.create(kind=kind, omero_id=serial, owner_id=owner,
                                      group_id=group)
        elif op == "bulk_create":
            Collection.objects.bulk_create([
                Collection(kind=k, omero_id=serial * 10 + n, owner_id=owner, group_id=group)
                for n, k in enumerate(KINDS)])
        elif op == "save":  # a whole object saved, read before other writes
            target.group_id, target.owner_id = group, owner
            target.save()
        elif op == "chgrp":
            Collection.objects.filter(owner_id=target.owner_id).update(group_id=group)
        elif op == "chown":
            Collection.objects.filter(pk=target.pk).update(owner_id=owner)
        elif op == "kind":
            Collection.objects.filter(pk=target.pk).update(kind=kind)
        elif op in ("gone", "back"):
            Collection.objects.filter(group_id=group).update(gone=op == "gone")
        elif op == "figures":  # what a scan stores: no counted column
            Collection.objects.update(files=pick, bytes=pick * 100)
        elif op == "delete":
            target.delete()
        elif op == "delete_many":
            Collection.objects.filter(kind=kind).delete()
        else:
            with connection.cursor() as cur:
                cur.execute("TRUNCATE storagemanager_collection CASCADE")
        assert _kept() == _truth(), f"after {op}"


class _Access:
    """What collections_page asks of permissions.Access: a user who sees their own
    collections and those of one shared group (or everything)."""

    def __init__(self, user, shared, sees_all=False):
        self.user, self.shared, self.sees_all = user, shared, sees_all

    def visible(self, queryset):
        from django.db.models import Q

        if self.sees_all:
            return queryset
        return queryset.filter(Q(owner_id=self.user) | Q(group_id__in=self.shared))


def test_the_lists_total_is_the_count_of_what_the_user_may_see(app_db):
    Collection.objects.bulk_create([
        Collection(kind=KINDS[n % 2], omero_id=n, name=f"c{n}", owner_id=OWNERS[n % 3],
                   group_id=GROUPS[n % 2], gone=n % 7 == 0) for n in range(60)])
    factory = RequestFactory()
    for access in (_Access(2, [3]), _Access(5, []), _Access(6, [3, 4]), _Access(0, [], True)):
        for query in ({}, {"kind": "screen"}, {"kind": "project", "sort": "-size"},
                      {"q": "1"}, {"rule": "files at least 0"}):
            page = collections_page(access, factory.get("/", query).GET)
            visible = access.visible(Collection.objects.filter(gone=False))
            if "kind" in query:
                visible = visible.filter(kind=query["kind"])
            if "q" in query:
                visible = visible.filter(name__contains=query["q"])
            assert page["total"] == visible.count() > 0, (access.user, query)
