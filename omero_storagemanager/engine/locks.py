"""One archive, purge or restore at a time per collection, whoever starts it.

The job queue already runs one job per collection; this lock also covers the command
line and scripts calling the engine directly. It is a PostgreSQL session-level
advisory lock on the app's database: held by a connection, so a process killed at any
instant releases it with its connection, and it holds across hosts sharing the database.
"""
from contextlib import contextmanager

from django.db import connection

# First key of the two-int advisory lock: this app's collection locks.
NAMESPACE = 0x534D43  # "SMC"


class CollectionBusy(RuntimeError):
    """Another archive, purge or restore of the collection is running."""


@contextmanager
def collection_lock(collection, what):
    """Hold the collection's lock for `what`; CollectionBusy at once if it is taken."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [NAMESPACE, collection.pk])
        if not cur.fetchone()[0]:
            raise CollectionBusy(f"{collection.key}: another archive, purge or restore of it "
                                 f"is running; {what} not started")
    try:
        yield
    finally:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", [NAMESPACE, collection.pk])
