"""The incremental catalogue equals a full scan, collection by collection, after any
sequence of facility changes (a Hypothesis property).

Random batches of changes (imports, shared filesets, plates, links, unlinks, deletes,
chowns, chgrps, attachments, shared attachments, new and renamed collections, resized
files) are made on a generated facility the way OMERO makes them (testbed.changes:
eventlog rows where OMERO writes them, none for Delete2's deletes); after every batch
the incremental refresh runs and the app's catalogue must equal a full scan's figures
(catalog.totals.collection_figures) and OMERO's names, for every collection.
"""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omero_storagemanager.engine.incremental import FULL, INCREMENTAL, refresh_catalog
from testbed.changes import OPERATIONS, FacilityChanges

from .incremental_support import catalogue_differences, reader

BATCHES = st.lists(
    st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 1_000_000)),
             min_size=1, max_size=4),
    min_size=1, max_size=3)
MODES = []


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=BATCHES)
def test_incremental_equals_full_after_every_batch(facility, app_db, batches):
    conn = reader(facility)
    writer = facility.connect()
    try:
        changes = FacilityChanges(writer, seed=len(MODES))
        if not MODES:
            assert refresh_catalog(conn).mode == FULL  # the first catalogue
        for batch in batches:
            done = [changes.apply(op, pick) for op, pick in batch]
            report = refresh_catalog(conn)
            MODES.append(report.mode)
            found = catalogue_differences(conn)
            assert not found, (f"after {[d for d in done if d]} ({report.mode}, "
                               f"{report.reason or 'no fallback'}):\n" + "\n".join(found))
    finally:
        writer.close()
        conn.close()


def test_the_property_exercised_both_paths():
    """The property ran both refreshes: incremental ones, and full scans where deletes
    (which OMERO does not log) made the catalogue fall back. Runs after the property
    (pytest keeps the file's order)."""
    assert INCREMENTAL in MODES and FULL in MODES, MODES
