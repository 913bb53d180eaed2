"""Scan against the generated facility's ground truth, for every kind of content.

The truth (testbed/generator.py) is computed from the generator's own construction,
never from the database, so each figure here is checked against an independent oracle.
"""
import os

import psycopg2
import psycopg2.extensions
import pytest

from omero_storagemanager.catalog import connect as catalog_connect
from omero_storagemanager.catalog.collections import UnknownCollection, parse_key
from omero_storagemanager.catalog.inventory import InventoryReader
from omero_storagemanager.catalog.paths import RepositoryPaths, numbered
from omero_storagemanager.catalog.totals import collection_figures, union_totals
from omero_storagemanager.engine.disk import RepositoryUnreadable, stat_inventory
from omero_storagemanager.engine.scan import scan
from omero_storagemanager.engine.stats import usage_statistics
from omero_storagemanager.engine.sync import sync_collections
from omero_storagemanager.models import Collection, Quota, ScanResult

DB_ONLY_KINDS = {"fileset_entry", "import_log", "pixels", "original", "attachment"}


@pytest.fixture(scope="module")
def omero(facility):
    conn = psycopg2.connect(facility.dsn)
    conn.set_session(readonly=True, autocommit=True)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def paths(facility):
    return RepositoryPaths(facility.truth.data_dir, facility.truth.managed_dir)


def recorded_size(f):
    """The size OMERO's database holds for a truth file."""
    return f.get("db_size", f["size"])


def expected_catalog(col):
    files = [f for f in col["files"] if f["kind"] in DB_ONLY_KINDS]
    return {
        "files": len(files),
        "bytes": sum(recorded_size(f) for f in files),
        "shared_bytes": sum(recorded_size(f) for f in files if f["shared_with"]),
        "images": len(col["image_ids"]),
        "thumbnails": len(col["thumbnails"]),
        "unhashed_files": sum(1 for f in files if not f["hash"]),
    }


def expected_stat(col):
    present = [f for f in col["files"] if not f["missing"]]
    return {
        "files": len(col["files"]),
        "bytes": sum(f["size"] for f in present),
        "missing_files": sum(1 for f in col["files"] if f["missing"]),
        "size_mismatches": sum(1 for f in present if "db_size" in f),
        "symlinks": sum(1 for f in col["files"] if f["symlink_target"]),
        "pyramids": sum(1 for f in col["files"] if f["kind"] in ("pyramid", "pyramid_lock")),
        "thumbnail_bytes": sum(t["size"] for t in col["thumbnails"]),
        "newest_file": max((f["mtime"] for f in present), default=None),
        "last_access": max((f["atime"] for f in present), default=None),
    }


def test_numbered_paths_follow_omero():
    assert [numbered(i) for i in (999, 1000, 123456, 1234567, 1234567890)] == [
        "999", "Dir-001/1000", "Dir-123/123456", "Dir-001/Dir-234/1234567",
        "Dir-001/Dir-234/Dir-567/1234567890"]


def test_collection_keys_are_written_the_omero_way():
    assert parse_key("Project:12") == ("project", 12)
    assert parse_key(" screen : 3 ") == ("screen", 3)
    for bad in ("Dataset:1", "Project:", "Project:-1", "Project:1;DROP TABLE x", ""):
        with pytest.raises(ValueError, match="Project:<id> or Screen:<id>"):
            parse_key(bad)


def test_inventory_of_every_collection_matches_the_truth(facility, omero, paths):
    reader = InventoryReader(omero, paths)
    kinds_seen = set()
    for key, col in facility.truth.collections.items():
        inventory = reader.read(*parse_key(key))
        stat_inventory(inventory, paths)
        got = {f.path: f for f in inventory.files}
        want = {f["path"]: f for f in col["files"]}
        assert sorted(got) == sorted(want), key
        for path, f in want.items():
            g = got[path]
            kinds_seen.add(g.kind)
            assert g.kind == f["kind"], path
            assert g.shared_with == f["shared_with"], path
            assert g.symlink_target == f["symlink_target"], path
            assert g.exists is (not f["missing"]), path
            if not f["missing"]:
                assert g.disk_size == f["size"], path
            assert g.hash == f.get("db_hash", f["hash"]), path
            if f["kind"] in DB_ONLY_KINDS:
                assert g.size == recorded_size(f), path
        assert inventory.image_ids == col["image_ids"], key
        assert sorted(t.path for t in inventory.thumbnails) == \
            sorted(t["path"] for t in col["thumbnails"]), key
        assert [t.disk_size for t in sorted(inventory.thumbnails, key=lambda t: t.path)] == \
            [t["size"] for t in sorted(col["thumbnails"], key=lambda t: t["path"])], key
    # The facility exercises every kind of content the inventory knows.
    assert kinds_seen == DB_ONLY_KINDS | {"pyramid", "pyramid_lock"}


def test_catalog_figures_of_all_collections_match_the_truth(facility, omero):
    figures = collection_figures(omero)
    for key, col in facility.truth.collections.items():
        f = figures.get(parse_key(key))
        got = {k: getattr(f, k) if f else 0 for k in expected_catalog(col)}
        assert got == expected_catalog(col), key
    shared = [k for k, c in facility.truth.collections.items()
              if any(f["shared_with"] for f in c["files"])]
    assert len(shared) >= 2, "the facility must hold a fileset shared by two collections"


def test_owner_and_group_totals_never_count_a_file_twice(facility, omero):
    truth = facility.truth
    for by, attr in (("owner", "owner_id"), ("group", "group_id")):
        totals = union_totals(omero, by)
        groups = {}
        for key, col in truth.collections.items():
            groups.setdefault(col[attr], []).append(key)
        for who, keys in groups.items():
            files = {f["path"]: f for k in keys for f in truth.collections[k]["files"]
                     if f["kind"] in DB_ONLY_KINDS}
            expected = (len(files), sum(recorded_size(f) for f in files.values()))
            assert totals.get(who, (0, 0)) == expected, (by, who)
    # The shared fileset sits in two projects of one owner: the union is smaller than
    # the sum, which is what "never count a file twice" is about.
    by_owner = union_totals(omero, "owner")
    summed = {}
    for figures_key, f in collection_figures(omero).items():
        kind, cid = figures_key
        owner = truth.collections[f"{kind.capitalize()}:{cid}"]["owner_id"]
        summed[owner] = summed.get(owner, 0) + f.bytes
    assert any(by_owner[o][1] < summed[o] for o in by_owner)


def test_catalog_scan_stores_figures_for_every_collection(facility, omero, paths, app_db):
    report = scan(omero, paths, "catalog")
    assert report.collections == len(facility.truth.collections)
    for key, col in facility.truth.collections.items():
        kind, cid = parse_key(key)
        c = Collection.objects.get(kind=kind, omero_id=cid)
        want = expected_catalog(col)
        assert (c.files, c.bytes, c.images, c.shared_bytes) == (
            want["files"], want["bytes"], want["images"], want["shared_bytes"]), key
        assert c.name == col["name"] and c.owner_id == col["owner_id"]
        assert c.scan_mode == "catalog" and c.scanned_at is not None
        result = ScanResult.objects.get(collection=c)
        assert result.figures["files"] == want["files"]


def test_catalog_scan_of_named_collections_agrees_with_the_scan_of_all(
        facility, omero, paths, app_db):
    scan(omero, paths, "catalog")
    everything = {c.key: (c.files, c.bytes, c.shared_bytes) for c in Collection.objects.all()}
    keys = [parse_key(k) for k in facility.truth.collections]
    scan(omero, paths, "catalog", keys=keys)
    named = {c.key: (c.files, c.bytes, c.shared_bytes) for c in Collection.objects.all()}
    assert named == everything
    assert ScanResult.objects.count() == 2 * len(keys)


def test_stat_scan_finds_missing_files_mismatches_symlinks_and_times(
        facility, omero, paths, app_db):
    report = scan(omero, paths, "stat")
    truth = facility.truth
    for key, col in truth.collections.items():
        f = report.figures[key]
        want = expected_stat(col)
        got = {k: getattr(f, k) for k in want}
        got["newest_file"] = f.newest_file and f.newest_file.timestamp()
        got["last_access"] = f.last_access and f.last_access.timestamp()
        assert got == want, key
    anomalies = {a["path"]: a for a in truth.anomalies}
    reported = {p["path"]: (key, p["problem"]) for key, found in report.problems.items()
                for p in found}
    assert {path: problem for path, (_, problem) in reported.items()} == {
        path: a["kind"].replace("_", " ") for path, a in anomalies.items()}
    stored = Collection.objects.get(kind="project", omero_id=parse_key(
        truth.anomalies[0]["collections"][0])[1])
    assert stored.missing_files + ScanResult.objects.filter(
        collection=stored).count() >= 1


def test_verify_scan_catches_a_checksum_mismatch_and_keeps_atimes(
        facility, omero, paths, app_db):
    files = [f["path"] for f in facility.truth.all_files() if not f["missing"]]
    before = {p: os.stat(p).st_atime_ns for p in files}
    report = scan(omero, paths, "verify")
    after = {p: os.stat(p).st_atime_ns for p in files}
    assert after == before, "verifying must not change any file's access time"
    mismatched = {p["path"] for found in report.problems.values() for p in found
                  if p["problem"] == "checksum mismatch"}
    expected = {f["path"] for f in facility.truth.all_files()
                if "db_hash" in f and not f["missing"]}
    assert mismatched == expected and expected, "the facility has one damaged file"
    assert sum(f.checksum_mismatches for f in report.figures.values()) == len(expected)


def test_sync_follows_renames_new_and_deleted_collections(facility, omero, app_db):
    sync_collections(omero)
    writer = psycopg2.connect(facility.dsn)
    try:
        with writer, writer.cursor() as cur:
            cur.execute("SELECT id, name FROM project ORDER BY id LIMIT 1")
            pid, old_name = cur.fetchone()
            cur.execute("UPDATE project SET name = %s WHERE id = %s", ["Renamed ünïcode", pid])
            cur.execute("SELECT max(id) + 1 FROM project")
            new_id = cur.fetchone()[0]
            cur.execute("INSERT INTO project (id, permissions, name, creation_id, group_id,"
                        " owner_id, update_id) SELECT %s, permissions, 'brand new',"
                        " creation_id, group_id, owner_id, update_id FROM project"
                        " WHERE id = %s", [new_id, pid])
        report = sync_collections(omero)
        assert report.added == [f"Project:{new_id}"]
        assert f"Project:{pid}" in report.changed
        assert Collection.objects.get(kind="project", omero_id=pid).name == "Renamed ünïcode"
        with writer, writer.cursor() as cur:
            cur.execute("DELETE FROM project WHERE id = %s", [new_id])
            cur.execute("UPDATE project SET name = %s WHERE id = %s", [old_name, pid])
        report = sync_collections(omero)
        assert report.gone == [f"Project:{new_id}"]
        gone = Collection.objects.get(kind="project", omero_id=new_id)
        assert gone.gone is True  # kept, marked: its copies must stay findable
    finally:
        writer.close()


def test_statistics_per_user_and_group_flag_over_quota(facility, omero, paths, app_db):
    scan(omero, paths, "catalog")
    truth = facility.truth
    owner_totals = union_totals(omero, "owner")
    biggest = max(owner_totals, key=lambda o: owner_totals[o][1])
    Quota.objects.create(scope="user", omero_id=None, max_bytes=10**12)  # default: generous
    Quota.objects.create(scope="user", omero_id=biggest, max_bytes=owner_totals[biggest][1] - 1)
    stats = usage_statistics(omero)
    users = {u["id"]: u for u in stats["users"]}
    assert users[biggest]["over_quota"] is True
    assert [u["id"] for u in stats["users"] if u["over_quota"]] == [biggest]
    for who, (files, nbytes) in owner_totals.items():
        assert users[who]["online_bytes"] == nbytes
        assert users[who]["collections"] == sum(
            1 for c in truth.collections.values() if c["owner_id"] == who)
    groups = {g["id"]: g for g in stats["groups"]}
    assert sum(g["collections"] for g in groups.values()) == len(truth.collections)


def test_unknown_collection_and_unreadable_repository_are_refused(omero, paths, tmp_path,
                                                                   app_db):
    with pytest.raises(UnknownCollection, match="Project:987654"):
        scan(omero, paths, "catalog", keys=[("project", 987654)])
    gone = RepositoryPaths(str(tmp_path / "unmounted"), str(tmp_path / "unmounted" / "MR"))
    with pytest.raises(RepositoryUnreadable, match="not readable"):
        scan(omero, gone, "stat")
    with pytest.raises(ValueError, match="unknown scan mode"):
        scan(omero, paths, "fast")


@pytest.mark.parametrize("mode", ["catalog", "stat", "verify"])
def test_all_at_once_equals_one_by_one(facility, omero, paths, app_db, mode):
    """The bulk path (every collection, each file once) and the per-collection path
    give the same figures and the same problems."""
    keys = [parse_key(k) for k in facility.truth.collections]
    one_by_one = scan(omero, paths, mode, keys=keys)
    at_once = scan(omero, paths, mode)
    assert set(at_once.figures) == set(one_by_one.figures)
    for key in one_by_one.figures:
        a, b = at_once.figures[key], one_by_one.figures[key]
        if mode == "catalog":
            # The SQL path measures only what the database holds (no newest-file time
            # from the disk, no per-file shared flags): compare what both measure.
            fields = ("files", "bytes", "images", "thumbnails", "shared_bytes",
                      "unhashed_files")
            a, b = ([getattr(x, f) for f in fields] for x in (a, b))
        assert a == b, key

    def problems(report):
        return {k: sorted(p["path"] + p["problem"] for p in v) for k, v in report.problems.items()}
    assert problems(at_once) == problems(one_by_one)


def test_holders_asked_on_a_second_connection_give_the_same_scan(facility, omero, paths,
                                                                 app_db):
    """With a connection factory, who-holds-what runs beside the file stream: same result."""
    opened = []

    def connect():
        opened.append(catalog_connect(psycopg2.extensions.parse_dsn(facility.dsn)))
        return opened[-1]

    serial = scan(omero, paths, "stat")
    parallel = scan(omero, paths, "stat", connect=connect)
    assert len(opened) == 1 and opened[0].closed  # used, then closed
    assert parallel.figures == serial.figures and parallel.problems == serial.problems


class _Recording:
    """A progress that remembers the order of its calls."""

    def __init__(self):
        self.calls = []

    def start(self, total):
        self.calls.append(("start", total))

    def advance(self, items=1, files=0, nbytes=0):
        self.calls.append(("advance", items, files, nbytes))

    def done(self):
        self.calls.append(("done",))


@pytest.mark.parametrize("second", [False, True], ids=["one connection", "two"])
def test_stat_scan_of_everything_reports_progress_after_it_starts(facility, omero, paths,
                                                                 app_db, second):
    """The sync (and so progress.start) may run while the files stream: the files are
    reported after start, all of them, and by the thread that owns the progress."""
    import threading
    progress, threads = _Recording(), set()
    advance = progress.advance

    def advance_here(*args):
        threads.add(threading.get_ident())
        advance(*args)
    progress.advance = advance_here
    connect = ((lambda: catalog_connect(psycopg2.extensions.parse_dsn(facility.dsn)))
               if second else None)
    report = scan(omero, paths, "stat", progress=progress, connect=connect)
    names = [c[0] for c in progress.calls]
    assert names[0] == "start" and names[-1] == "done" and names.count("start") == 1
    assert progress.calls[0][1] == report.collections > 0
    # Every file stat'ed once: each file of the truth, each thumbnail, shared or not.
    cols = facility.truth.data["collections"].values()
    thumbnails = {t["path"] for col in cols for t in col["thumbnails"]}
    stat_files = sum(c[2] for c in progress.calls if c[0] == "advance")
    assert stat_files == len(facility.truth.all_files()) + len(thumbnails)
    assert threads == {threading.get_ident()}


def test_stat_scan_whose_sync_fails_stops_the_stream_and_closes_everything(
        facility, omero, paths, app_db, monkeypatch):
    from omero_storagemanager.engine import scan as scan_module
    opened = []

    def connect():
        opened.append(catalog_connect(psycopg2.extensions.parse_dsn(facility.dsn)))
        return opened[-1]

    def broken_sync(conn, keys=None):
        raise RuntimeError("sync failed")

    monkeypatch.setattr(scan_module, "sync_collections", broken_sync)
    with pytest.raises(RuntimeError, match="sync failed"):
        scan(omero, paths, "stat", connect=connect)
    assert len(opened) == 1 and opened[0].closed
    assert not ScanResult.objects.exists()
    assert _statworkers() == []
    with omero.cursor() as cur:  # the first connection is usable again
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_stat_scan_whose_stream_fails_says_why_and_closes_everything(
        facility, omero, paths, app_db, monkeypatch):
    from omero_storagemanager.catalog import bulkrows
    opened = []

    def connect():
        opened.append(catalog_connect(psycopg2.extensions.parse_dsn(facility.dsn)))
        return opened[-1]

    def broken_rows(verify):
        return "SELECT 1/0", "SELECT 1"

    monkeypatch.setattr(bulkrows, "rows_sql", broken_rows)  # the statements are the catalog's
    with pytest.raises(psycopg2.errors.DivisionByZero):
        scan(omero, paths, "stat", connect=connect)
    assert len(opened) == 1 and opened[0].closed
    assert not ScanResult.objects.exists()
    assert _statworkers() == []


def _statworkers():
    """Stat worker processes of this test process still running."""
    import subprocess
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "statworker" in line]


def _stored_figures():
    return {c.key: (c.files, c.bytes, c.images, c.shared_bytes, c.scan_mode)
            for c in Collection.objects.filter(gone=False)}


def test_catalog_scan_with_a_second_connection_gives_the_same_figures(facility, omero,
                                                                      paths, app_db):
    """The figures aggregated on a second connection while the first syncs: same scan."""
    opened = []

    def connect():
        opened.append(catalog_connect(psycopg2.extensions.parse_dsn(facility.dsn)))
        return opened[-1]

    serial = scan(omero, paths, "catalog")
    stored = _stored_figures()
    parallel = scan(omero, paths, "catalog", connect=connect)
    assert len(opened) == 1 and opened[0].closed  # used, then closed
    assert parallel.figures == serial.figures and parallel.figures
    assert (parallel.collections, parallel.files, parallel.bytes) == (
        serial.collections, serial.files, serial.bytes)
    assert _stored_figures() == stored
    assert ScanResult.objects.count() == 2 * serial.collections


def test_catalog_scan_that_fails_closes_its_second_connection(facility, omero, paths, app_db,
                                                              monkeypatch):
    from omero_storagemanager.engine import scan as scan_module
    opened = []

    def connect():
        opened.append(catalog_connect(psycopg2.extensions.parse_dsn(facility.dsn)))
        return opened[-1]

    def broken_sync(conn, keys=None):
        raise RuntimeError("sync failed")

    monkeypatch.setattr(scan_module, "sync_collections", broken_sync)
    with pytest.raises(RuntimeError, match="sync failed"):
        scan(omero, paths, "catalog", connect=connect)
    assert len(opened) == 1 and opened[0].closed
    assert not ScanResult.objects.exists()


def test_catalog_scan_stores_twice_in_one_transaction(facility, omero, paths, app_db):
    """store() drops its temporary table itself: a second scan in the same transaction
    (a job's retry, a test) finds no table left over."""
    from django.db import transaction
    with transaction.atomic():
        first = scan(omero, paths, "catalog")
        second = scan(omero, paths, "catalog")
    assert first.figures == second.figures
    assert ScanResult.objects.count() == 2 * first.collections
    for key, f in second.figures.items():
        c = Collection.objects.get(kind=parse_key(key)[0], omero_id=parse_key(key)[1])
        assert (c.files, c.bytes, c.images, c.shared_bytes) == (
            f.files, f.bytes, f.images, f.shared_bytes)


def test_sync_with_nothing_changed_writes_nothing(facility, omero, app_db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    first = sync_collections(omero)
    assert len(first.added) == len(facility.truth.collections)
    with CaptureQueriesContext(connection) as queries:
        again = sync_collections(omero)
    assert (again.added, again.changed, again.gone, again.back) == ([], [], [], [])
    assert again.total == first.total
    assert [q["sql"] for q in queries.captured_queries
            if not q["sql"].lstrip().upper().startswith("SELECT")] == []


def test_sync_brings_back_a_collection_marked_gone(facility, omero, app_db):
    sync_collections(omero)
    c = Collection.objects.filter(kind="project").order_by("omero_id").first()
    Collection.objects.filter(pk=c.pk).update(gone=True, name="stale", files=7)
    report = sync_collections(omero)
    assert report.back == [c.key] and report.changed == [c.key]
    again = Collection.objects.get(pk=c.pk)
    assert (again.gone, again.name, again.files) == (False, c.name, 7)  # figures kept


def test_collection_table_leaves_room_for_hot_updates(app_db):
    """Migration 0007: a scan updates every Collection row; with fillfactor 70 the new
    versions stay on their page and no index is touched (docs/performance.md)."""
    from django.db import connection
    with connection.cursor() as cur:
        cur.execute("SELECT reloptions FROM pg_class WHERE relname = %s",
                    [Collection._meta.db_table])
        (options,) = cur.fetchone()
    assert options is not None and "fillfactor=70" in options, options

