"""Archive, purge and restore end to end on the generated facility, for each location type.

Real files, a real OMERO-shaped database, the stand-in gateway for OMERO changes. Each
test starts from a fresh facility copy of the repository (function scope) because purge
and restore change the primary files.
"""
import hashlib
import os
import shutil
import stat

import bagit
import psycopg2
import pytest

from omero_storagemanager.backends.base import LocationOffline
from omero_storagemanager.catalog.collections import parse_key
from omero_storagemanager.catalog.paths import RepositoryPaths
from omero_storagemanager.engine.archive import ArchiveError, LocationFull, archive_collection
from omero_storagemanager.engine.locations import add_location, audit, purge_read_cache
from omero_storagemanager.engine.purge import ARCHIVED_PREFIX, plan_purge, purge_collection
from omero_storagemanager.engine.restore import RestoreWaiting, restore_collection
from omero_storagemanager.engine.sync import sync_collections
from omero_storagemanager.gateway import STATE_NS
from omero_storagemanager.models import Collection, Copy, CopyFile, PurgedFile
from testbed.generator import generate_facility
from testbed.omerodb import create_omero_database
from testbed.standin import StandInGateway

GB = 10**9


class World:
    """A facility, its catalog connection, paths, a gateway, and helpers."""

    def __init__(self, pg_server, name, root):
        self.dsn = create_omero_database(pg_server, name)
        self.truth = generate_facility(self.dsn, root / "facility", seed=1)
        self.root = root
        self.conn = psycopg2.connect(self.dsn)
        self.conn.set_session(readonly=True, autocommit=True)
        self.paths = RepositoryPaths(self.truth.data_dir, self.truth.managed_dir)
        self.gateway = StandInGateway(self.dsn, 0)
        sync_collections(self.conn)

    def collection(self, key):
        kind, oid = parse_key(key)
        return Collection.objects.get(kind=kind, omero_id=oid)

    def location(self, type="hdd", name=None, **kwargs):
        mount = self.root / f"mnt-{name or type}"
        mount.mkdir(exist_ok=True)
        if type == "automated":
            (self.root / "xml").mkdir(exist_ok=True)
            kwargs.setdefault("xml_folder", str(self.root / "xml"))
        return add_location(name or f"{type} disk", type, str(mount), kwargs.pop("max_bytes", GB),
                            current=True, **kwargs)

    def archive(self, key, location):
        return archive_collection(self.conn, self.paths, self.collection(key), location, log=_quiet)

    def purge(self, key, **kwargs):
        return purge_collection(self.conn, self.paths, self.collection(key), self.gateway,
                                log=_quiet, **kwargs)

    def restore(self, key):
        return restore_collection(self.collection(key), self.gateway, log=_quiet)

    def files(self, key):
        """path -> (sha1, mode) of the collection's files that lie in the repository."""
        out = {}
        for f in self.truth.collections[key]["files"]:
            if f["missing"] or f["symlink_target"]:
                continue
            with open(f["path"], "rb") as fh:
                out[f["path"]] = (hashlib.sha1(fh.read()).hexdigest(),
                                  stat.S_IMODE(os.lstat(f["path"]).st_mode))
        return out

    def key_where(self, predicate):
        return next(k for k, c in self.truth.collections.items() if predicate(c))


def _quiet(_):
    pass


def world_of(cls, prefix, pg_server, tmp_path, request):
    """A World of `cls` in a database named after the test, dropped afterwards (the
    body of the world fixtures of the archive, fault and state tests)."""
    name = prefix + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    w = cls(pg_server, name, tmp_path)
    yield w
    w.conn.close()
    pg_server.drop_database(name)


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    yield from world_of(World, "arch_", pg_server, tmp_path, request)


def clean(c):
    """A collection with no anomaly, no sharing and no in-place import: fully purgeable."""
    return c["files"] and not any(f["missing"] or "db_size" in f or f["shared_with"]
                                  or f["symlink_target"] for f in c["files"])


def test_archive_writes_a_verified_bag_any_bagit_tool_accepts(world):
    key = world.key_where(clean)
    location = world.location("hdd")
    result = world.archive(key, location)
    copy = Copy.objects.get(pk=result.copy_id)
    assert copy.state == Copy.VERIFIED and result.state == "archived"
    bag_dir = os.path.join(location.mount, str(location.pk), "write", copy.bag_path)
    kind, oid = parse_key(key)
    assert copy.bag_path.startswith(f"{kind}/{world.collection(key).group_id}/"
                                    f"{world.collection(key).owner_id}/{oid}/")
    bag = bagit.Bag(bag_dir)
    bag.validate()  # the independent Library of Congress validator
    assert bag.info["External-Identifier"] == key
    payload = {p[len("data/"):] for p in bag.payload_files()}
    expected = {world.paths.relative(f["path"]) for f in world.truth.collections[key]["files"]}
    assert payload == expected
    assert CopyFile.objects.filter(copy=copy, verified=True).count() == len(expected)
    assert world.collection(key).state == Collection.ARCHIVED
    assert not any(name.endswith(".partial") for name in os.listdir(os.path.dirname(bag_dir)))


def test_archive_again_copies_nothing_then_only_what_changed(world):
    key = world.key_where(lambda c: clean(c) and any(f["kind"] == "pixels" for f in c["files"]))
    location = world.location("hdd")
    first = world.archive(key, location)
    assert world.archive(key, location).state == "unchanged"
    assert Copy.objects.count() == 1
    pixels = next(f["path"] for f in world.truth.collections[key]["files"] if f["kind"] == "pixels")
    with open(pixels, "r+b") as fh:  # OMERO keeps no checksum of Pixels/ files: mtime tells
        fh.write(b"\x01")
    os.utime(pixels, (1.7e9, 1.7e9))
    second = world.archive(key, location)
    copy = Copy.objects.get(pk=second.copy_id)
    assert second.files == 1 and copy.parent_id == first.copy_id
    bagit.Bag(os.path.join(location.mount, str(location.pk), "write", copy.bag_path)).validate()


def test_damaged_primary_is_never_archived_silently(world):
    key = world.key_where(lambda c: clean(c) and any(f["hasher"] == "SHA1-160" and f["size"] > 0
                                                    for f in c["files"]))
    victim = next(f["path"] for f in world.truth.collections[key]["files"]
                  if f["hasher"] == "SHA1-160" and f["size"] > 0)
    with open(victim, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))
    before = open(victim, "rb").read()
    location = world.location("hdd")
    with pytest.raises(ArchiveError, match="does not match its recorded checksum"):
        world.archive(key, location)
    assert not Copy.objects.filter(state=Copy.VERIFIED).exists()
    assert world.collection(key).state == Collection.ONLINE
    assert open(victim, "rb").read() == before  # the primary is left as it was


def test_unmounted_location_and_full_location_are_refused_before_writing(world):
    key = world.key_where(clean)
    location = world.location("hdd")
    id_dir = os.path.join(location.mount, str(location.pk))
    os.rename(id_dir, id_dir + "-elsewhere")  # the disk is not connected: empty mount point
    with pytest.raises(LocationOffline, match=f"id {location.pk}"):
        world.archive(key, location)
    assert os.listdir(location.mount) == [f"{location.pk}-elsewhere"]
    os.rename(id_dir + "-elsewhere", id_dir)
    small = world.location("hdd", name="small", max_bytes=10)
    with pytest.raises(LocationFull, match="maximum size"):
        world.archive(key, small)
    assert not os.listdir(os.path.join(small.mount, str(small.pk), "write"))


def test_purge_dry_run_lists_what_is_freed_and_what_blocks(world):
    key = world.key_where(lambda c: any(f["shared_with"] for f in c["files"]))
    location = world.location("hdd")
    world.archive(key, location)
    plan = plan_purge(world.conn, world.paths, world.collection(key))
    shared = {f["path"] for f in world.truth.collections[key]["files"] if f["shared_with"]}
    blocked = dict(plan.blocked)
    assert shared and shared <= set(blocked)
    assert all("stays online" in blocked[p] for p in shared)
    assert {c.record.path for c in plan.freed}.isdisjoint(shared)
    assert all(os.path.exists(p) for p in shared)  # a dry run changes nothing
    assert not PurgedFile.objects.exists()


def test_purge_refuses_files_without_a_verified_copy(world):
    key = world.key_where(clean)
    plan = plan_purge(world.conn, world.paths, world.collection(key))
    assert not plan.freed and plan.blocked
    assert all("0 verified copies, 1 required" in reason for _, reason in plan.blocked)
    two = plan_purge(world.conn, world.paths, world.collection(key), copies_required=2)
    assert not two.freed


def test_purge_then_restore_on_hdd_gives_back_identical_files_and_omero_state(world):
    key = world.key_where(clean)
    before = world.files(key)
    mtimes = {p: os.stat(p).st_mtime for p in before}
    location = world.location("hdd")
    world.archive(key, location)
    name = world.collection(key).name
    result = world.purge(key, rename=True, archive_user_id=1, archive_group_id=2)
    assert not result.blocked
    assert not any(os.path.lexists(p) for p in before)
    collection = world.collection(key)
    assert collection.state == Collection.PURGED
    kind, oid = parse_key(key)
    omero = world.gateway.describe(kind, oid)
    assert omero == {"name": ARCHIVED_PREFIX + name, "owner_id": 1, "group_id": 2}
    state = dict(world.gateway.get_state(kind, oid))
    assert state["state"] == "purged" and "copy" in state
    world.restore(key)
    assert world.files(key) == before  # byte-identical, modes too
    assert {p: os.stat(p).st_mtime for p in before} == mtimes  # times too
    again = world.archive(key, location)  # unchanged since its copy: nothing to copy
    assert Copy.objects.filter(collection=world.collection(key)).count() == 1, again
    assert world.gateway.describe(kind, oid) == {
        "name": name, "owner_id": world.truth.collections[key]["owner_id"],
        "group_id": world.truth.collections[key]["group_id"]}
    assert dict(world.gateway.get_state(kind, oid))["state"] == "archived"
    assert world.collection(key).state == Collection.ARCHIVED


def test_restore_waits_for_a_disconnected_disk_then_resumes(world):
    key = world.key_where(clean)
    before = world.files(key)
    location = world.location("hdd", name="Disk 7")
    world.archive(key, location)
    world.purge(key)
    id_dir = os.path.join(location.mount, str(location.pk))
    os.rename(id_dir, id_dir + ".away")
    with pytest.raises(RestoreWaiting) as waiting:
        world.restore(key)
    assert "Disk 7" in str(waiting.value) and f"id {location.pk}" in str(waiting.value)
    assert world.collection(key).state == Collection.RESTORING
    os.rename(id_dir + ".away", id_dir)
    world.restore(key)
    assert world.files(key) == before


def test_symlink_location_keeps_files_served_through_links(world):
    key = world.key_where(clean)
    before = world.files(key)
    location = world.location("symlink")
    world.archive(key, location)
    world.purge(key)
    archive_root = os.path.join(location.mount, str(location.pk))
    for path, (sha1, _) in before.items():
        assert os.path.islink(path) and os.readlink(path).startswith(archive_root)
        with open(path, "rb") as fh:  # OMERO reading the file gets the same bytes
            assert hashlib.sha1(fh.read()).hexdigest() == sha1
    world.restore(key)
    assert world.files(key) == before
    assert not any(os.path.islink(p) for p in before)


def test_in_place_import_targets_are_never_purged(world):
    key = world.key_where(lambda c: any(f["symlink_target"] for f in c["files"]))
    links = [f for f in world.truth.collections[key]["files"] if f["symlink_target"]]
    location = world.location("hdd")
    world.archive(key, location)
    plan = world.purge(key)
    blocked = dict(plan.blocked)
    for f in links:
        assert "in-place import" in blocked[f["path"]]
        assert os.path.islink(f["path"]) and os.path.exists(f["symlink_target"])


def test_tape_read_cache_evicted_restore_waits_for_tape_then_resumes(world):
    key = world.key_where(clean)
    before = world.files(key)
    location = world.location("tape", max_bytes=GB, purge_watermark=1, purge_enabled=True)
    result = world.archive(key, location)
    copy = Copy.objects.get(pk=result.copy_id)
    read_bag = os.path.join(location.mount, str(location.pk), "read", copy.bag_path)
    write_bag = os.path.join(location.mount, str(location.pk), "write", copy.bag_path)
    bagit.Bag(read_bag).validate()
    world.purge(key)
    # Not evicted while in write/ (the tape does not hold it yet: test_cache_purge_queue)
    assert purge_read_cache(location).kept == [copy.bag_path]
    tape = world.root / "tape" / copy.bag_path
    shutil.copytree(write_bag, tape)  # the tape software's night: to tape, write/ emptied
    shutil.rmtree(write_bag)
    evicted = purge_read_cache(location)
    assert evicted.evicted == [copy.bag_path] and not os.path.exists(read_bag)
    with pytest.raises(RestoreWaiting, match="tape"):
        world.restore(key)
    shutil.copytree(tape, read_bag)  # the operator restores it from tape
    world.restore(key)
    assert world.files(key) == before


def test_automated_location_writes_orders_and_restores_when_data_is_back(world):
    key = world.key_where(clean)
    before = world.files(key)
    location = world.location("automated", purge_watermark=1, purge_enabled=True)
    result = world.archive(key, location)
    copy = Copy.objects.get(pk=result.copy_id)
    xml_dir = world.root / "xml"
    orders = [p.read_text() for p in xml_dir.iterdir()]
    assert any("<archive>" in o and copy.bag_path.split("/")[-1] in o for o in orders)
    world.purge(key)
    base = os.path.join(location.mount, str(location.pk))
    archived = world.root / "archiver" / copy.bag_path  # the archiver takes write/ away
    shutil.move(os.path.join(base, "write", copy.bag_path), archived)
    assert purge_read_cache(location).evicted == [copy.bag_path]
    with pytest.raises(RestoreWaiting):
        world.restore(key)
    restores = [p.read_text() for p in xml_dir.iterdir() if "<restore>" in p.read_text()]
    assert len(restores) == 1 and "<DestinationFolder>" in restores[0]
    with pytest.raises(RestoreWaiting):
        world.restore(key)  # asking again writes no second order
    assert len([p for p in xml_dir.iterdir() if "<restore>" in p.read_text()]) == 1
    shutil.copytree(archived, os.path.join(base, "read", copy.bag_path))
    world.restore(key)
    assert world.files(key) == before


def test_audit_catches_a_flipped_bit_and_restore_uses_the_good_copy(world):
    key = world.key_where(lambda c: clean(c) and any(f["size"] > 0 for f in c["files"]))
    before = world.files(key)
    first = world.location("hdd", name="first")
    world.archive(key, first)
    second = world.location("hdd", name="second")
    world.archive(key, second)
    bad_copy = Copy.objects.get(location=first)
    entry = next(e for e in bad_copy.entries.all() if e.size > 0)
    bad_file = os.path.join(first.mount, str(first.pk), "write", bad_copy.bag_path, "data",
                            entry.relpath)
    with open(bad_file, "r+b") as fh:
        byte = fh.read(1)
        fh.seek(0)
        fh.write(bytes([byte[0] ^ 0x01]))
    report = audit()
    assert report.audited == 2 and len(report.failed) == 1
    assert entry.relpath in " ".join(report.problems)
    bad_copy.refresh_from_db()
    assert bad_copy.state == Copy.FAILED_AUDIT and bad_copy.last_audit_ok is False
    world.purge(key, copies_required=1)
    world.restore(key)
    assert world.files(key) == before


def test_one_archive_purge_or_restore_at_a_time_per_collection(world):
    """The engine's own lock: a second run on the same collection is refused at once,
    whoever started the first (another process, the command line, a job)."""
    import threading

    from django.db import connection

    from omero_storagemanager.engine.locks import CollectionBusy, collection_lock

    key = world.key_where(clean)
    location = world.location("hdd")
    held, release = threading.Event(), threading.Event()

    def other_process():
        with collection_lock(world.collection(key), "archive"):
            held.set()
            release.wait(30)
        connection.close()  # this thread's own database session

    thread = threading.Thread(target=other_process)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(CollectionBusy, match="another archive, purge or restore"):
            world.archive(key, location)
        with pytest.raises(CollectionBusy):
            world.purge(key)
        assert not Copy.objects.exists()
    finally:
        release.set()
        thread.join()
    assert world.archive(key, location).state == "archived"  # free again
