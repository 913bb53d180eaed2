"""The archived size the collections list sorts and filters on: the column that triggers
on the copy table keep (migration 0015), which the model does not declare.

It must equal the sum of each collection's verified copies after any sequence of copy
changes, however the code makes them (save, a queryset update, a bulk create, delete,
a copy moved to another collection: a Hypothesis property), and when two transactions
verify copies of one collection at the same moment (each trigger sums after locking
the collection's row, so neither misses the other's copy). A Collection saved from a
stale object does not write over it.
"""
import threading
import time
from datetime import datetime, timezone

import psycopg2
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omero_storagemanager.models import Collection, Copy, Location
from omero_storagemanager.views.listing import annotate

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
STATES = [state for state, _ in Copy.STATES]


def _world(collections=3):
    location = Location.objects.create(name="disk", type="hdd", mount="/tmp", max_bytes=10**15)
    made = [Collection.objects.create(kind="project", omero_id=i, name=f"p{i}", owner_id=2,
                                      group_id=3) for i in range(collections)]
    return location, made


def _listed():
    """{collection pk: archived size} as the list reads it."""
    return dict(annotate(Collection.objects.all(), {"archived_bytes"})
                .values_list("pk", "archived_bytes"))


def _truth():
    totals = {c.pk: 0 for c in Collection.objects.all()}
    for copy in Copy.objects.filter(state=Copy.VERIFIED):
        totals[copy.collection_id] += copy.bytes
    return totals


OPERATIONS = st.lists(st.tuples(
    st.sampled_from(["create", "bulk_create", "save_state", "update_state", "resize",
                     "move", "delete", "save_collection"]),
    st.integers(0, 2), st.sampled_from(STATES), st.integers(0, 10**15)),
    min_size=1, max_size=25)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_archived_size_is_the_sum_of_verified_copies_after_any_changes(app_db, operations):
    with connection.cursor() as cur:
        cur.execute("TRUNCATE storagemanager_copy, storagemanager_collection, "
                    "storagemanager_location CASCADE")
    location, made = _world()
    for op, pick, state, size in operations:
        target = made[pick]
        copies = list(Copy.objects.order_by("pk"))
        copy = copies[pick % len(copies)] if copies else None
        if op == "create" or copy is None:
            Copy.objects.create(collection=target, location=location, bag_path="b",
                                state=state, created=NOW, bytes=size)
        elif op == "bulk_create":
            Copy.objects.bulk_create([Copy(collection=c, location=location, bag_path="b",
                                           state=state, created=NOW, bytes=size) for c in made])
        elif op == "save_state":
            copy.state = state
            copy.save()
        elif op == "update_state":
            Copy.objects.filter(collection=target).update(state=state)
        elif op == "resize":
            Copy.objects.filter(pk=copy.pk).update(bytes=size)
        elif op == "move":
            Copy.objects.filter(pk=copy.pk).update(collection=target)
        elif op == "delete":
            copy.delete()
        else:  # a Collection saved whole from an object read before the copies changed
            target.name = f"renamed {size}"
            target.save()
        assert _listed() == _truth(), f"after {op}"


def _verify_in_transaction(dsn, copy_id, started, release, errors):
    try:
        conn = psycopg2.connect(**dsn)
        try:
            with conn.cursor() as cur:
                cur.execute("UPDATE storagemanager_copy SET state = 'verified' WHERE id = %s",
                            [copy_id])
                started.set()
                release.wait(30)
            conn.commit()
        finally:
            conn.close()
    except Exception as exc:  # reported by the test, not lost in the thread
        errors.append(exc)


def _libpq_dsn():
    settings_dict = connection.settings_dict
    return {"dbname": settings_dict["NAME"], "user": settings_dict["USER"],
            "password": settings_dict["PASSWORD"], "host": settings_dict["HOST"],
            "port": settings_dict["PORT"]}


def _wait_for_a_lock_wait():
    with connection.cursor() as cur:
        for _ in range(300):
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()")
            if cur.fetchone()[0]:
                return True
            time.sleep(0.1)
    return False


def test_two_copies_verified_at_once_are_both_counted(app_db):
    location, made = _world(1)
    copies = [Copy.objects.create(collection=made[0], location=location, bag_path=f"b{i}",
                                  state=Copy.WRITING, created=NOW, bytes=size)
              for i, size in enumerate((1000, 234))]
    dsn, errors = _libpq_dsn(), []
    started = [threading.Event(), threading.Event()]
    release = threading.Event()
    threads = [threading.Thread(target=_verify_in_transaction,
                                args=(dsn, c.pk, started[i], release, errors))
               for i, c in enumerate(copies)]
    try:
        threads[0].start()
        assert started[0].wait(30), "the first transaction did not update its copy"
        threads[1].start()
        # The second one's trigger waits for the first one's lock on the collection: its
        # statement began before the first committed.
        assert _wait_for_a_lock_wait(), "the second transaction never waited for the first"
    finally:
        release.set()
        for thread in threads:
            thread.join(60)
    assert not errors, errors
    assert _listed()[made[0].pk] == 1234
