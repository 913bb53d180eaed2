"""Content-based automatic archive (issue 20, manual 4.2 and 6.3), from policy to bag.

A collection is "changed" when its content is not all in a verified copy at the current
location: a file replaced by another (same file count, other bytes, OMERO's size and
checksum updated as a re-import leaves them) is caught, where comparing file counts
missed it. The scheduled handler runs in-process with a job handle, and the archive job
it submits runs through the real runner.
"""
import hashlib
import os
import time

import bagit
import psycopg2
import pytest

from omero_storagemanager import preferences, settings
from omero_storagemanager.models import Copy, CopyFile, Job
from omero_storagemanager.tasks.handle import JobHandle
from omero_storagemanager.tasks.policy import auto_archive, candidates
from omero_storagemanager.tasks.runner import run_job
from tests.test_archive import World, clean, world_of


@pytest.fixture
def world(pg_server, tmp_path, request, app_db, monkeypatch):
    for w in world_of(World, "auto_", pg_server, tmp_path, request):
        monkeypatch.setattr(settings, "OMERO_DB", {"dsn": w.dsn})
        monkeypatch.setattr(settings, "DATA_DIR", w.truth.data_dir)
        monkeypatch.setattr(settings, "MANAGED_DIR", w.truth.managed_dir)
        monkeypatch.setattr(settings, "VAR_DIR", str(tmp_path / "var"))
        monkeypatch.setattr(settings, "COPY_WORKERS", 1)
        yield w


def run_policy():
    job = Job.objects.create(kind="auto_archive", state=Job.RUNNING, worker="test")
    with JobHandle(job) as handle:
        return auto_archive(job, handle)["submitted"]


def replace_a_file(world, key):
    """A file of the collection replaced by another of another size, as a re-import
    leaves it: new bytes on disk, OMERO's size and SHA1 updated."""
    record = next(f for f in world.truth.collections[key]["files"]
                  if f["kind"] == "fileset_entry" and f["originalfile_id"])
    data = os.urandom(os.path.getsize(record["path"]) + 1000)
    with open(record["path"], "wb") as f:
        f.write(data)
    conn = psycopg2.connect(world.dsn)
    with conn, conn.cursor() as cur:
        cur.execute('UPDATE originalfile SET "size" = %s, hash = %s, hasher = 6 WHERE id = %s',
                    [len(data), hashlib.sha1(data).hexdigest(), record["originalfile_id"]])
    conn.close()
    return record["path"], hashlib.sha1(data).hexdigest()


def archived_for_auto_archive(world, disk):
    """A collection with a fileset entry, archived on a new disk location, its owner's
    collections archived automatically: (key, location)."""
    key = world.key_where(lambda c: clean(c) and any(
        f["kind"] == "fileset_entry" and f["originalfile_id"] for f in c["files"]))
    location = world.location("hdd", name=disk)
    world.archive(key, location)
    preferences.set_many({"auto_archive_users": [world.truth.collections[key]["owner_id"]]})
    return key, location


def test_a_replaced_file_is_archived_automatically_into_a_new_bag(world):
    key, location = archived_for_auto_archive(world, "Auto disk")
    assert key not in run_policy()  # archived and unchanged: nothing to do
    Job.objects.filter(kind="archive").delete()

    path, sha1 = replace_a_file(world, key)
    # The file count did not change: counting files sees nothing...
    assert key not in [c.key for c in candidates(users=[world.truth.collections[key]["owner_id"]])]
    # ...the content does: the policy submits an archive of it.
    assert key in run_policy()
    [job] = Job.objects.filter(kind="archive", collections=world.collection(key))
    assert job.params == {"automatic": True}
    assert run_job(job.pk) == Job.DONE, Job.objects.get(pk=job.pk).error

    newest = Copy.objects.filter(collection=world.collection(key), state=Copy.VERIFIED) \
        .order_by("-pk").first()
    relpath = world.paths.relative(path)
    assert CopyFile.objects.get(copy=newest, relpath=relpath).checksum == sha1
    bag = os.path.join(location.mount, str(location.pk), "write", newest.bag_path)
    bagit.Bag(bag).validate()
    with open(os.path.join(bag, "data", relpath), "rb") as f:
        assert hashlib.sha1(f.read()).hexdigest() == sha1
    Job.objects.filter(kind="archive").delete()
    assert key not in run_policy()  # and now it is unchanged again


def test_a_collection_found_unchanged_is_planned_again_only_once_something_changed(
        world, monkeypatch):
    """A quiet night does not stat every file again: a collection whose plan found
    nothing keeps a memo of what it was made from (OMERO's records of its files, its
    copies, what its last stat scan found), and is planned again only when that
    changed."""
    from omero_storagemanager.catalog.paths import RepositoryPaths
    from omero_storagemanager.engine import archiveplan
    from omero_storagemanager.engine.scan import scan

    key, _ = archived_for_auto_archive(world, "Memo disk")
    planned = []
    real_plan = archiveplan.plan
    monkeypatch.setattr(archiveplan, "plan", lambda conn, paths, collection, *rest: (
        planned.append(collection.key) or real_plan(conn, paths, collection, *rest)))

    def night():
        planned.clear()
        return run_policy()

    def archive_it():
        for job in Job.objects.filter(kind="archive", state=Job.QUEUED):
            assert run_job(job.pk) == Job.DONE, Job.objects.get(pk=job.pk).error

    assert key not in night() and planned == [key]  # planned: nothing to copy
    assert key not in night() and planned == []  # the same again: not planned
    # The disk read (a stat scan): planned once; read again, finding it as it was: not
    # planned...
    paths = RepositoryPaths(world.truth.data_dir, world.truth.managed_dir)
    scan_keys = [(world.collection(key).kind, world.collection(key).omero_id)]

    def stat_scan():
        conn = psycopg2.connect(world.dsn)
        try:
            scan(conn, paths, "stat", keys=scan_keys)
        finally:
            conn.close()
    stat_scan()  # the first: what the disk holds is known from now on
    assert key not in night() and planned == [key]
    stat_scan()
    assert key not in night() and planned == []
    # ...a file touched behind OMERO's back, seen by the next stat scan: planned again,
    # and archived again (its mtime is part of what a copy holds).
    touched = next(f["path"] for f in world.truth.collections[key]["files"]
                   if f["kind"] == "fileset_entry" and f["originalfile_id"])
    two_days_ago = time.time() - 2 * 86400  # newer than the rest, older than min age
    os.utime(touched, (two_days_ago, two_days_ago))
    stat_scan()
    assert key in night() and planned == [key]
    archive_it()
    assert key not in night() and planned == [key]  # a new verified copy: planned once
    assert key not in night() and planned == []
    # A file replaced in OMERO (same count): planned, and archived.
    replace_a_file(world, key)
    assert key in night() and planned == [key]
    archive_it()
    # A new verified copy changes the memo: planned once, then quiet again.
    assert key not in night() and planned == [key]
    assert key not in night() and planned == []


def test_what_does_not_fit_at_the_current_location_waits_for_room(world):
    """Manual 7.2: archiving goes on only while the location is below its maximum size.
    The policy starts only the archives that fit (as the archive would count them) and
    names the others in its summary, log and one warning: no job that would fail."""
    from omero_storagemanager.engine.archiveplan import plan
    from omero_storagemanager.models import Location

    keys = [key for key, c in world.truth.collections.items() if clean(c)]
    assert len(keys) >= 2, keys
    location = world.location("hdd", name="Small disk")

    def size(key):
        return plan(world.conn, world.paths, world.collection(key), location).bytes
    room = min(size(key) for key in keys)  # the smallest fits; not everything does
    Location.objects.filter(pk=location.pk).update(max_bytes=room)
    preferences.set_many({"auto_archive_users": sorted(
        {world.truth.collections[key]["owner_id"] for key in keys})})

    job = Job.objects.create(kind="auto_archive", state=Job.RUNNING, worker="test")
    with JobHandle(job) as handle:
        summary = auto_archive(job, handle)
    log_file = os.path.join(handle.dir, "job.log")
    submitted, waiting = summary["submitted"], summary["waiting_for_room"]
    assert submitted and waiting and set(keys) <= set(submitted + waiting)
    assert sum(size(k) for k in submitted) <= room
    started = Job.objects.filter(kind="archive")
    assert sorted(c.key for j in started for c in j.collections.all()) == sorted(submitted)
    for archive_job in started:
        assert run_job(archive_job.pk) == Job.DONE, archive_job.error
    with open(log_file, encoding="utf-8") as f:
        assert f"wait for room at Small disk: {', '.join(waiting)}" in f.read()
