"""The incremental catalogue equals a full scan, collection by collection, after any
sequence of facility changes (a Hypothesis property).

Random batches of changes (imports, shared filesets, plates, links, unlinks, deletes,
chowns, chgrps, attachments, shared attachments, new and renamed collections, resized
files) are made on a generated facility the way OMERO makes them (testbed.changes:
eventlog rows where OMERO writes them, none for Delete2's deletes); after every batch
the incremental refresh runs and the app's catalogue must equal a full scan's figures
(catalog.totals.collection_figures) and OMERO's names, for every collection, and every
fileset's figures the catalogue keeps between refreshes (engine/filesetcache.py) must
equal OMERO's.

Each example starts from its own copy of the generated facility and an empty catalogue,
so that an example is a whole story: a failure found is replayed and shrunk as it was
found, not on a facility earlier examples changed (a shared facility made one wrong
refresh fail every later example, and Hypothesis report a "flaky" minimal one).
"""
import itertools

import psycopg2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omero_storagemanager.engine.incremental import FULL, INCREMENTAL, refresh_catalog
from testbed.changes import OPERATIONS, FacilityChanges

from .incremental_support import catalogue_differences, kept_fileset_differences

_COPIES = itertools.count()

BATCHES = st.lists(
    st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 1_000_000)),
             min_size=1, max_size=4),
    min_size=1, max_size=3)
MODES = []


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=BATCHES)
def test_incremental_equals_full_after_every_batch(facility, app_db, batches):
    name = f"{facility.name[:48]}_ex{next(_COPIES)}"
    dsn = facility.server.create_database(name, template=facility.name)
    _empty_catalogue(app_db)
    conn = psycopg2.connect(dsn)
    conn.set_session(readonly=True, autocommit=True)
    writer = psycopg2.connect(dsn)
    try:
        changes = FacilityChanges(writer, seed=0)
        assert refresh_catalog(conn).mode == FULL  # the first catalogue
        for batch in batches:
            done = [changes.apply(op, pick) for op, pick in batch]
            report = refresh_catalog(conn)
            MODES.append(report.mode)
            found = catalogue_differences(conn) + kept_fileset_differences(conn)
            assert not found, (f"after {[d for d in done if d]} ({report.mode}, "
                               f"{report.reason or 'no fallback'}):\n" + "\n".join(found))
    finally:
        writer.close()
        conn.close()
        facility.server.drop_database(name)


def _empty_catalogue(connection):
    """The app's tables as a fresh install has them (app_db empties them only after the
    test, and Hypothesis runs every example within one test)."""
    from django.apps import apps

    tables = [m._meta.db_table for m in apps.get_app_config("storagemanager").get_models()]
    with connection.cursor() as cur:
        cur.execute("TRUNCATE {} CASCADE".format(", ".join('"%s"' % t for t in tables)))


def test_the_property_exercised_both_paths():
    """The property ran both refreshes: incremental ones, and full scans where deletes
    (which OMERO does not log) made the catalogue fall back. Runs after the property
    (pytest keeps the file's order)."""
    assert INCREMENTAL in MODES and FULL in MODES, MODES
