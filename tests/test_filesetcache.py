"""Each fileset's figures kept between catalogue refreshes (engine/filesetcache.py): the
cases where a kept figure could go stale (the property test covers random ones)."""
from omero_storagemanager.engine.incremental import FULL, INCREMENTAL, refresh_catalog
from omero_storagemanager.models import Collection, FilesetFigures
from testbed import eventlog
from testbed.changes import FacilityChanges

from .incremental_support import catalogue_differences, kept_fileset_differences, reader


def _ids(conn, sql, params=()):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return [r[0] for r in cur.fetchall()]


def _all_right(conn):
    return catalogue_differences(conn) + kept_fileset_differences(conn)


def _resize(writer, changes, file_id, size):
    """A file's recorded size changes, logged as OMERO logs an update."""
    with writer.cursor() as cur:
        changes.cur, changes.created, changes.updated = cur, [], []
        changes._as_owner_of("originalfile", file_id)
        changes._update("originalfile", file_id, size=size)
        eventlog.log(cur, "UPDATE", "originalfile", [file_id], changes.ev)
    writer.commit()


def _holders(conn, fileset):
    return set(_ids(conn, "SELECT DISTINCT pdl.parent FROM image i"
                          " JOIN datasetimagelink dil ON dil.child = i.id"
                          " JOIN projectdatasetlink pdl ON pdl.child = dil.parent"
                          " WHERE i.fileset = %s", [fileset]))


def test_a_full_scan_keeps_the_figures_of_every_fileset(facility, app_db):
    conn = reader(facility)
    try:
        assert refresh_catalog(conn).mode == FULL
        kept = FilesetFigures.objects.count()
        assert kept == len(_ids(conn, "SELECT DISTINCT fileset FROM filesetentry")) > 0
        assert kept_fileset_differences(conn) == []
    finally:
        conn.close()


def test_a_file_resized_in_a_fileset_two_collections_hold(facility, app_db):
    """The fileset is read anew once, and both collections holding it follow."""
    conn, writer = reader(facility), facility.connect()
    try:
        refresh_catalog(conn)
        changes = FacilityChanges(writer, seed=11)
        changes.apply("import_orphans", 0)  # two images of one fileset, in no dataset
        images = _ids(conn, "SELECT id FROM image ORDER BY id DESC LIMIT 2")
        fileset = _ids(conn, "SELECT fileset FROM image WHERE id = %s", [images[0]])[0]
        for image, project in zip(images, _ids(conn, "SELECT id FROM project ORDER BY id")):
            dataset = _ids(conn, "SELECT child FROM projectdatasetlink WHERE parent = %s"
                                 " ORDER BY child", [project])[0]
            changes.link("datasetimagelink", dataset, image)
        assert refresh_catalog(conn).mode == INCREMENTAL
        holders = _holders(conn, fileset)
        assert len(holders) == 2 and _all_right(conn) == []
        before = {c.omero_id: c.bytes for c in Collection.objects.filter(
            kind="project", omero_id__in=holders)}
        kept = FilesetFigures.objects.get(fileset_id=fileset).bytes
        file_id = _ids(conn, "SELECT originalfile FROM filesetentry WHERE fileset = %s"
                             " ORDER BY id", [fileset])[0]
        size = _ids(conn, 'SELECT "size" FROM originalfile WHERE id = %s', [file_id])[0]
        _resize(writer, changes, file_id, size + 1_000_000)
        report = refresh_catalog(conn)
        assert report.mode == INCREMENTAL and report.collections == 2
        assert FilesetFigures.objects.get(fileset_id=fileset).bytes == kept + 1_000_000
        after = {c.omero_id: c.bytes for c in Collection.objects.filter(
            kind="project", omero_id__in=holders)}
        assert after == {p: n + 1_000_000 for p, n in before.items()}
        assert _all_right(conn) == []
    finally:
        writer.close()
        conn.close()


def test_a_deleted_file_makes_a_full_scan_which_keeps_figures_anew(facility, app_db):
    """Delete2 removes a fileset's entry and its file without an eventlog row: the
    deletion counters make the refresh a full scan, which replaces every kept figure."""
    conn, writer = reader(facility), facility.connect()
    try:
        refresh_catalog(conn)
        fileset = _ids(conn, "SELECT fileset FROM filesetentry GROUP BY fileset"
                             " HAVING count(*) > 1 ORDER BY fileset LIMIT 1")[0]
        entry, file_id = _rows(conn, "SELECT id, originalfile FROM filesetentry"
                                     " WHERE fileset = %s ORDER BY id LIMIT 1", [fileset])[0]
        kept = FilesetFigures.objects.get(fileset_id=fileset)
        with writer.cursor() as cur:
            cur.execute("DELETE FROM filesetentry WHERE id = %s", [entry])
            cur.execute("DELETE FROM originalfile WHERE id = %s", [file_id])
            cur.execute("SELECT pg_stat_force_next_flush()")
        writer.commit()
        report = refresh_catalog(conn)
        assert report.mode == FULL and "filesetentry" in report.reason
        assert FilesetFigures.objects.get(fileset_id=fileset).files == kept.files - 1
        assert _all_right(conn) == []
    finally:
        writer.close()
        conn.close()


def _rows(conn, sql, params=()):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def test_chown_and_chgrp_leave_the_kept_figures_right(facility, app_db):
    conn, writer = reader(facility), facility.connect()
    try:
        refresh_catalog(conn)
        changes = FacilityChanges(writer, seed=12)
        for operation, pick in (("chown", 0), ("chgrp", 1), ("chown", 2)):
            assert changes.apply(operation, pick)
            report = refresh_catalog(conn)
            assert report.mode == INCREMENTAL and report.collections >= 1
            assert _all_right(conn) == []
    finally:
        writer.close()
        conn.close()


def test_a_fileset_no_collection_holds_is_read_anew_once_linked(facility, app_db):
    """A kept figure is dropped when its fileset changes even if no collection reached
    holds it: linked into a Project later, it must not come back stale."""
    conn, writer = reader(facility), facility.connect()
    try:
        changes = FacilityChanges(writer, seed=13)
        changes.apply("import_orphans", 0)
        refresh_catalog(conn)  # the first, full: keeps the orphaned fileset's figures too
        image = _ids(conn, "SELECT id FROM image ORDER BY id DESC LIMIT 1")[0]
        fileset = _ids(conn, "SELECT fileset FROM image WHERE id = %s", [image])[0]
        assert FilesetFigures.objects.filter(fileset_id=fileset).exists()
        file_id = _ids(conn, "SELECT originalfile FROM filesetentry WHERE fileset = %s"
                             " ORDER BY id", [fileset])[0]
        _resize(writer, changes, file_id, 7_777_777)
        report = refresh_catalog(conn)
        assert (report.mode, report.collections) == (INCREMENTAL, 0)
        assert not FilesetFigures.objects.filter(fileset_id=fileset).exists()
        project = _ids(conn, "SELECT id FROM project ORDER BY id")[0]
        dataset = _ids(conn, "SELECT child FROM projectdatasetlink WHERE parent = %s"
                             " ORDER BY child", [project])[0]
        changes.link("datasetimagelink", dataset, image)
        assert refresh_catalog(conn).mode == INCREMENTAL
        assert FilesetFigures.objects.get(fileset_id=fileset).bytes >= 7_777_777
        assert _all_right(conn) == []
    finally:
        writer.close()
        conn.close()


def test_a_full_scan_for_an_unlink_keeps_the_figures_but_drops_the_changed(facility, app_db):
    """An unlink (Delete2: no eventlog row) makes the refresh a full scan, but deletes
    nothing a fileset's figures are summed from: the kept figures stay, those of a
    fileset changed meanwhile are dropped, and none is left stale."""
    conn, writer = reader(facility), facility.connect()
    lines = []
    try:
        refresh_catalog(conn)
        kept = FilesetFigures.objects.count()
        changes = FacilityChanges(writer, seed=14)
        fileset = _ids(conn, "SELECT fileset FROM filesetentry ORDER BY fileset LIMIT 1")[0]
        file_id = _ids(conn, "SELECT originalfile FROM filesetentry WHERE fileset = %s"
                             " ORDER BY id", [fileset])[0]
        _resize(writer, changes, file_id, 5_555_555)
        assert changes.apply("unlink_image", 3).startswith("unlinked datasetimagelink")
        report = refresh_catalog(conn, log=lines.append)
        assert report.mode == FULL and report.reason.startswith(
            "rows were deleted from datasetimagelink")
        assert not FilesetFigures.objects.filter(fileset_id=fileset).exists()
        assert FilesetFigures.objects.count() == kept - 1
        assert _all_right(conn) == []
        # The next change to that fileset's collections reads it anew.
        _resize(writer, changes, file_id, 6_666_666)
        assert refresh_catalog(conn).mode == INCREMENTAL
        assert _all_right(conn) == []
    finally:
        writer.close()
        conn.close()
