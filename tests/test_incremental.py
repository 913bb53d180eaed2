"""The incremental catalogue on chosen situations: what it reads, what it refreshes, and
each reason it falls back to a full scan (the property test covers random ones)."""
import psycopg2

from omero_storagemanager.engine.incremental import FULL, INCREMENTAL, refresh_catalog
from omero_storagemanager.models import CatalogCursor, Collection
from testbed.changes import FacilityChanges
from testbed.generator import FILE_ANNOTATION

from .incremental_support import catalogue_differences, reader


def _ids(conn, sql, params=()):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return [r[0] for r in cur.fetchall()]


def _dataset_of_project(conn, project):
    return _ids(conn, "SELECT child FROM projectdatasetlink WHERE parent = %s ORDER BY child",
                [project])[0]


def test_inserts_are_read_from_eventlog_and_reach_only_their_collections(facility, app_db):
    conn, writer = reader(facility), facility.connect()
    lines = []
    try:
        first = refresh_catalog(conn, log=lines.append)
        assert first.mode == FULL and first.reason == "no catalogue has been made yet"
        assert lines == ["full catalogue scan: no catalogue has been made yet"]
        untouched = {c.key: c.scanned_at for c in Collection.objects.all()}
        changes = FacilityChanges(writer, seed=1)
        assert changes.apply("import", 0).startswith("import of")
        report = refresh_catalog(conn, log=lines.append)
        assert report.mode == INCREMENTAL and report.reason == ""
        assert report.events > 5  # fileset, entries, files, job, images, pixels, link ...
        refreshed = {c.key for c in Collection.objects.all()
                     if c.scanned_at != untouched[c.key]}
        assert 1 <= len(refreshed) == report.collections < len(untouched)
        assert lines[-1].startswith("incremental catalogue: ")
        assert catalogue_differences(conn) == []
        # Nothing changed: nothing read, nothing refreshed.
        again = refresh_catalog(conn)
        assert (again.mode, again.events, again.collections) == (INCREMENTAL, 0, 0)
    finally:
        writer.close()
        conn.close()


def test_linking_an_orphaned_sibling_changes_the_collection_holding_the_other(facility, app_db):
    """Image B of a fileset whose image A is in Project 1 is linked into Project 2:
    Project 1's bytes become shared, though nothing of Project 1 was touched."""
    conn, writer = reader(facility), facility.connect()
    try:
        refresh_catalog(conn)
        changes = FacilityChanges(writer, seed=2)
        changes.apply("import_orphans", 0)
        a, b = _ids(conn, "SELECT id FROM image ORDER BY id DESC LIMIT 2")[::-1]
        projects = _ids(conn, "SELECT id FROM project ORDER BY id")
        p1, p2 = projects[0], projects[1]
        for image, project in ((a, p1), (b, p2)):
            _logged(writer, changes, "project", project, [  # as OMERO.web links it
                ("datasetimagelink", {"parent": _dataset_of_project(conn, project),
                                      "child": image})])
            report = refresh_catalog(conn)
            assert report.mode == INCREMENTAL
            assert catalogue_differences(conn) == []
        shared = Collection.objects.get(kind="project", omero_id=p1).shared_bytes
        assert shared > 0
    finally:
        writer.close()
        conn.close()


def _logged(writer, changes, owner_table, owner_id, inserts):
    """Rows inserted and logged as OMERO.web makes them: [(table, {column: value})],
    a value "<n>" standing for the id of the n-th row inserted here. Returns the ids."""
    from testbed import eventlog

    ids = []
    with writer.cursor() as cur:
        changes.cur, changes.created, changes.updated = cur, [], []
        changes._as_owner_of(owner_table, owner_id)
        for table, cols in inserts:
            cols = {k: ids[int(v[1:-1])] if isinstance(v, str) and v.startswith("<") else v
                    for k, v in cols.items()}
            ids.append(changes._insert(table, **cols, **changes.details))
        for table, oids in changes._grouped(changes.created):
            eventlog.log(cur, "INSERT", table, oids, changes.ev)
    writer.commit()
    return ids


def test_moving_a_container_reaches_every_collection_sharing_what_it_holds(facility, app_db):
    """A Dataset in no Project holds image B of a fileset whose image A is in Project 1,
    and a file also attached to Screen 1; linking the Dataset into Project 2 touches
    nothing of Project 1 or Screen 1, yet makes their bytes shared. The same for a
    Plate in no Screen moved into Screen 2. (The incremental catalogue once refreshed
    only the new parent: the property test found it.)"""
    conn, writer = reader(facility), facility.connect()
    try:
        refresh_catalog(conn)
        changes = FacilityChanges(writer, seed=5)
        changes.apply("import_orphans", 0)
        a, b = _ids(conn, "SELECT id FROM image ORDER BY id DESC LIMIT 2")[::-1]
        p1, p2 = _ids(conn, "SELECT id FROM project ORDER BY id")[2:4]
        s1, s2 = _ids(conn, "SELECT id FROM screen ORDER BY id")[:2]
        _logged(writer, changes, "project", p1, [
            ("datasetimagelink", {"parent": _dataset_of_project(conn, p1), "child": a})])
        ofid = _logged(writer, changes, "screen", s1, [
            ("originalfile", {"path": "uploads/", "name": "shared-notes.pdf", "size": 7_000,
                              "mimetype": "application/pdf"}),
            ("annotation", {"discriminator": FILE_ANNOTATION, "file": "<0>"}),
            ("screenannotationlink", {"parent": s1, "child": "<1>"})])[0]
        ann = _ids(conn, 'SELECT id FROM annotation WHERE "file" = %s', [ofid])[0]
        dataset, _, _ = _logged(writer, changes, "project", p2, [
            ("dataset", {"name": "loose"}),
            ("datasetimagelink", {"parent": "<0>", "child": b}),
            ("datasetannotationlink", {"parent": "<0>", "child": ann})])
        plate, _ = _logged(writer, changes, "screen", s2, [
            ("plate", {"name": "loose plate"}),
            ("plateannotationlink", {"parent": "<0>", "child": ann})])
        assert refresh_catalog(conn).mode == INCREMENTAL
        assert catalogue_differences(conn) == []
        before = {c.key: c.shared_bytes for c in Collection.objects.all()}

        changes.link("projectdatasetlink", p2, dataset)
        report = refresh_catalog(conn)
        assert report.mode == INCREMENTAL
        assert catalogue_differences(conn) == []
        after = {c.key: c.shared_bytes for c in Collection.objects.all()}
        assert after[f"Project:{p1}"] > before[f"Project:{p1}"]  # the fileset
        assert after[f"Screen:{s1}"] >= before[f"Screen:{s1}"] + 7_000  # the attachment

        changes.link("screenplatelink", s2, plate)
        assert refresh_catalog(conn).mode == INCREMENTAL
        assert catalogue_differences(conn) == []
    finally:
        writer.close()
        conn.close()


def test_a_delete_which_omero_does_not_log_makes_a_full_scan(facility, app_db):
    conn, writer = reader(facility), facility.connect()
    lines = []
    try:
        refresh_catalog(conn)
        changes = FacilityChanges(writer, seed=3)
        assert changes.apply("unlink_image", 5).startswith("unlinked datasetimagelink")
        report = refresh_catalog(conn, log=lines.append)
        assert report.mode == FULL
        assert report.reason.startswith("rows were deleted from datasetimagelink")
        assert lines == [f"full catalogue scan: {report.reason}"]
        assert catalogue_differences(conn) == []
        assert refresh_catalog(conn).mode == INCREMENTAL  # the counters were taken in
    finally:
        writer.close()
        conn.close()


def test_pruned_eventlog_rows_make_a_full_scan(facility, app_db):
    conn, writer = reader(facility), facility.connect()
    try:
        refresh_catalog(conn)
        changes = FacilityChanges(writer, seed=4)
        changes.apply("new_project", 0)
        last = CatalogCursor.objects.get().last_eventlog_id
        with writer.cursor() as cur:  # an admin prunes: every row up to the newest but one
            cur.execute("DELETE FROM eventlog WHERE id < (SELECT max(id) FROM eventlog)")
        writer.commit()
        report = refresh_catalog(conn)
        assert report.mode == FULL
        assert report.reason.startswith(f"eventlog rows after id {last} were pruned")
        assert catalogue_differences(conn) == []
    finally:
        writer.close()
        conn.close()


def test_rows_committed_late_by_a_transaction_open_at_the_last_read_are_read(facility, app_db):
    """Transaction 1 writes its rows (lower eventlog ids) but commits after a refresh
    that read the rows of transaction 2 (higher ids): the next refresh reads them."""
    conn, first, second = reader(facility), facility.connect(), facility.connect()
    try:
        refresh_catalog(conn)
        slow, quick = FacilityChanges(first, seed=5), FacilityChanges(second, seed=6)
        with first.cursor() as cur:  # transaction 1, left open: what apply() does, minus commit
            slow.pick, slow.created, slow.updated, slow.cur = 0, [], [], cur
            slow._new_project()
            from testbed import eventlog
            for table, ids in slow._grouped(slow.created):
                eventlog.log(cur, "INSERT", table, ids, slow.ev)
        quick.apply("new_project", 1)
        report = refresh_catalog(conn)
        assert report.mode == INCREMENTAL
        first.commit()
        with first.cursor() as cur:
            cur.execute("SELECT pg_stat_force_next_flush()")
        assert catalogue_differences(conn) != []  # the late project is not in yet
        late = refresh_catalog(conn)
        assert late.mode == INCREMENTAL and late.events > 0
        assert catalogue_differences(conn) == []
    finally:
        first.close()
        second.close()
        conn.close()


def test_the_schedule_runs_it_as_a_job_with_progress_and_reasons(facility, app_db, monkeypatch):
    """Migration 0013 installs the minutes schedule; what it runs submits a scan job that
    refreshes incrementally, logs why it made a full scan, and shows progress."""
    import importlib
    import os

    from django.apps import apps
    from django_q.models import Schedule

    from omero_storagemanager import settings
    from omero_storagemanager.models import Job
    from omero_storagemanager.tasks import runner, schedules
    from omero_storagemanager.views.serialize import job_full

    migration = importlib.import_module(
        "omero_storagemanager.migrations.0013_catalog_cursor")
    migration.install(apps, None)  # what migrate ran (tests truncate django_q's tables)
    entry = Schedule.objects.get(name=schedules.CATALOG_REFRESH)
    assert (entry.schedule_type, entry.minutes) == ("I", settings.CATALOG_REFRESH_MINUTES)
    module, func = entry.func.rsplit(".", 1)
    assert getattr(importlib.import_module(module), func) is schedules.refresh_catalog
    monkeypatch.setattr(settings, "OMERO_DB", {"dsn": facility.dsn})

    def run_one():
        text = schedules.refresh_catalog()
        job = Job.objects.get(pk=int(text.rsplit(" ", 1)[1]))
        assert job.params == {"mode": "catalog", "incremental": True, "scheduled": True}
        assert runner.run_job(job.pk) == Job.DONE
        job.refresh_from_db()
        with open(os.path.join(job.log_dir, "job.log"), encoding="utf-8") as f:
            return job, f.read()

    first, log = run_one()
    assert first.summary["refresh"] == "full"
    assert "full catalogue scan: no catalogue has been made yet" in log
    _attach(facility, seed=7, count=3)
    second, log = run_one()
    assert second.summary["refresh"] == "incremental" and second.summary["events"] == 3
    assert "incremental catalogue: 3 eventlog row(s)" in log
    shown = job_full(second)
    assert shown["files_total"] > 0 and shown["bytes_total"] > 0 and shown["progress"] == 1.0
    assert set(shown) >= {"bytes_per_second", "files_per_second", "seconds_left"}
    # Nothing changed in OMERO since: the schedule runs no job (the job list would fill
    # with one every few minutes), until something changes again.
    jobs = Job.objects.count()
    assert "nothing changed in OMERO" in schedules.refresh_catalog()
    assert Job.objects.count() == jobs
    _attach(facility, seed=8, count=1)
    third, log = run_one()
    assert third.summary["refresh"] == "incremental" and third.summary["events"] > 0
    # A scan already queued or running: the schedule adds none.
    busy = Job.objects.create(kind="scan", state=Job.RUNNING)
    assert "already queued or running" in schedules.refresh_catalog()
    busy.delete()


def _attach(facility, seed, count):
    writer = facility.connect()
    try:
        FacilityChanges(writer, seed=seed).apply("attach", count)
    finally:
        writer.close()


def test_the_command_line_refresh_says_what_it_did(tmp_path, pg_server, facility, app_db):
    from .test_cli import facility_omerodir, run_cli

    omerodir = facility_omerodir(tmp_path, pg_server, facility)
    proc = run_cli("refresh", omerodir=omerodir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "full catalogue scan: no catalogue has been made yet" in proc.stdout
    assert "full refresh: 0 eventlog row(s)" in proc.stdout
    assert "done:" in proc.stderr and "/s" in proc.stderr  # progress: counts and rate
    writer = facility.connect()
    try:
        FacilityChanges(writer, seed=8).apply("rename", 0)
    finally:
        writer.close()
    proc = run_cli("refresh", omerodir=omerodir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "incremental refresh: 1 eventlog row(s), 1 collection(s)" in proc.stdout


def test_a_changed_attachment_reaches_every_collection_it_is_attached_in(facility, app_db):
    """A file attached to an image of one Project and a dataset of another changes size:
    only the file's eventlog row says so, and both Projects follow."""
    conn, writer = reader(facility), facility.connect()
    try:
        refresh_catalog(conn)
        changes = FacilityChanges(writer, seed=9)
        for pick in range(3):  # attachments on several kinds of object, one file shared
            changes.apply("attach_again", pick)
        refresh_catalog(conn)  # many collections reached: may be a full scan
        for pick in range(8):
            assert changes.apply("resize_attachment", pick).startswith("resized attached")
            report = refresh_catalog(conn)
            assert (report.mode, report.events) == (INCREMENTAL, 1), report.reason
            assert report.collections >= 1
            assert catalogue_differences(conn) == []
    finally:
        writer.close()
        conn.close()
